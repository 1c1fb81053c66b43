using System.Diagnostics;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;

namespace Flowers.Tests.Support;

/// <summary>A built sample (Flowers, QuickStart) run as a child process, for what needs a process: signals, the native-library start-up.</summary>
internal sealed partial class FlowersProcess : IDisposable
{
    private const string EnvPath = "/usr/bin/env";

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly StringBuilder _error = new();

    private FlowersProcess(string dll, IEnumerable<string> args, string? workingDirectory, IReadOnlyDictionary<string, string?>? environment)
    {
        // A test run started in the background by a non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and
        // a child keeps an ignored signal through exec, so the sample would never see the Ctrl+C the signal tests send
        // (seen: a clean-clone run of .ci/run in the background trained to the end and exited 0). coreutils' env resets
        // SIGINT to its default before starting dotnet.
        var resetSigint = OperatingSystem.IsLinux() && File.Exists(EnvPath);
        var start = new ProcessStartInfo(resetSigint ? EnvPath : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Path.GetDirectoryName(dll)!,
        };
        if (resetSigint)
        {
            start.ArgumentList.Add("--default-signal=INT");
            start.ArgumentList.Add("dotnet");
        }

        start.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string?>())
        {
            if (value is null)
            {
                start.Environment.Remove(name);
            }
            else
            {
                start.Environment[name] = value;
            }
        }

        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => Append(_output, e.Data);
        _process.ErrorDataReceived += (_, e) => Append(_error, e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The configuration these tests were built in (the samples are built alike).</summary>
    private static string Configuration => typeof(FlowersProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()!.Configuration;

    public static string SampleDll(string project) =>
        Path.Combine(RepoPaths.Root, "samples", project, "bin", Configuration, "net10.0", project + ".dll");

    /// <summary>Starts a sample by project name (its built dll) or a dll path.</summary>
    public static FlowersProcess Start(string project, IEnumerable<string> args, string? workingDirectory = null, IReadOnlyDictionary<string, string?>? environment = null)
    {
        var dll = project.EndsWith(".dll", StringComparison.Ordinal) ? project : SampleDll(project);
        Assert.True(File.Exists(dll), $"{dll} is built with the solution (dotnet build TransferLearning.sln).");
        return new FlowersProcess(dll, args, workingDirectory, environment);
    }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public string Error
    {
        get
        {
            lock (_error)
            {
                return _error.ToString();
            }
        }
    }

    /// <summary>
    /// What the program wrote to stderr, without LibTorch's own warnings (lines like "[W1130 14:29:13.15 NNPACK.cpp:56]
    /// Could not initialize NNPACK!", which the native library prints itself on some CPUs).
    /// </summary>
    public string ErrorWithoutLibTorchWarnings =>
        string.Concat(Error.Split('\n').Where(l => l.Length > 0 && !LibTorchWarning().IsMatch(l)).Select(l => l + "\n"));

    /// <summary>Waits until stdout contains <paramref name="text"/>; false when the process ended or the time ran out first.</summary>
    public async Task<bool> WaitForOutputAsync(string text, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout)
        {
            if (Output.Contains(text, StringComparison.Ordinal))
            {
                return true;
            }

            if (_process.HasExited)
            {
                return Output.Contains(text, StringComparison.Ordinal);
            }

            await Task.Delay(20);
        }

        return false;
    }

    /// <summary>Sends a POSIX signal (SIGINT = 2, SIGTERM = 15) to the process.</summary>
    public void Signal(int signal) => Assert.Equal(0, Kill(_process.Id, signal));

    /// <summary>Waits for the exit and returns the exit code (all output read).</summary>
    public async Task<int> ExitCodeAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        await _process.WaitForExitAsync(cancel.Token);
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }

        _process.Dispose();
    }

    private static void Append(StringBuilder into, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (into)
        {
            into.Append(line).Append('\n');
        }
    }

    [GeneratedRegex(@"^\[[WIE]\d{4} ")]
    private static partial Regex LibTorchWarning();

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int Kill(int pid, int signal);
}
