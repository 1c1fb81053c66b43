using System.Runtime.InteropServices;

namespace Flowers;

/// <summary>
/// Ctrl+C (SIGINT) and SIGTERM as a cancellation request. The first signal cancels <see cref="Token"/>: training stops
/// within one batch and nothing is saved. Work inside <see cref="Protect"/> (saving the model) is never interrupted: it
/// completes, and the command then stops with <see cref="ExitCode"/>. A second Ctrl+C outside a protected section ends
/// the process at once.
/// </summary>
internal sealed class StopSignals : IDisposable
{
    public const int SigIntExitCode = 130;
    public const int SigTermExitCode = 143;

    private readonly CancellationTokenSource _cancel = new();
    private readonly List<PosixSignalRegistration> _registrations = [];
    private int _protected;
    private int _exitCode;

    /// <summary>Creates the stop source; with <paramref name="listen"/> it also handles the process's SIGINT and SIGTERM.</summary>
    public StopSignals(bool listen)
    {
        if (listen)
        {
            _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal));
            _registrations.Add(PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal));
        }
    }

    public CancellationToken Token => _cancel.Token;

    public bool IsRequested => _cancel.IsCancellationRequested;

    /// <summary>130 after Ctrl+C, 143 after SIGTERM (128 + the signal number, as shells report it).</summary>
    public int ExitCode => Volatile.Read(ref _exitCode) is var code and not 0 ? code : SigIntExitCode;

    /// <summary>Asks the command to stop, as the signal would (tests call this directly).</summary>
    public void Request(PosixSignal signal)
    {
        Interlocked.CompareExchange(ref _exitCode, signal == PosixSignal.SIGTERM ? SigTermExitCode : SigIntExitCode, 0);
        _cancel.Cancel();
    }

    /// <summary>A section that signals do not interrupt (a second Ctrl+C inside it is ignored too).</summary>
    public IDisposable Protect()
    {
        Interlocked.Increment(ref _protected);
        return new Unprotect(this);
    }

    public void Dispose()
    {
        foreach (var registration in _registrations)
        {
            registration.Dispose();
        }

        _cancel.Dispose();
    }

    private void OnSignal(PosixSignalContext context)
    {
        if (IsRequested && Volatile.Read(ref _protected) == 0 && context.Signal == PosixSignal.SIGINT)
        {
            return; // second Ctrl+C: the default action ends the process
        }

        context.Cancel = true;
        Request(context.Signal);
    }

    private sealed class Unprotect(StopSignals owner) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                Interlocked.Decrement(ref owner._protected);
            }
        }
    }
}
