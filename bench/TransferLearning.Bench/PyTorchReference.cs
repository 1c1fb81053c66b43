using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace TransferLearning.Bench;

/// <summary>
/// The PyTorch side of a comparison: <c>tools/pytorch/reference_bench.py --serve</c> run by <c>/usr/bin/python3</c> (or
/// <c>TL_BENCH_PYTHON</c>), kept alive for the whole benchmark so repetitions can alternate with ours. Each
/// <see cref="RunRepetition"/> asks it for one repetition and waits; between requests it sits idle on stdin.
/// </summary>
internal sealed class PyTorchReference : IDisposable
{
    private readonly Process _process;

    private PyTorchReference(Process process, string label, JsonElement ready)
    {
        _process = process;
        Label = label;
        Info = ready;
    }

    /// <summary>What this side is, for the table ("PyTorch 1.13.0a0, oneDNN ISA default").</summary>
    public string Label { get; }

    /// <summary>The script's ready line (versions, threads, ISA, trainable parameter count).</summary>
    public JsonElement Info { get; }

    /// <summary>
    /// Starts the reference, or returns null (with the reason on the console) when python or torch is missing.
    /// </summary>
    /// <param name="scriptArgs">Arguments for the script (mode, arch, batch, threads, steps), without <c>--serve</c>.</param>
    /// <param name="isa">Value of <c>ONEDNN_MAX_CPU_ISA</c> for the child, or "default" to leave it unset (PyTorch's default).</param>
    public static PyTorchReference? TryStart(IEnumerable<string> scriptArgs, string isa)
    {
        var python = Environment.GetEnvironmentVariable("TL_BENCH_PYTHON") ?? "/usr/bin/python3";
        var script = Path.Combine(BenchSupport.RepoRoot(), "tools", "pytorch", "reference_bench.py");
        if (!File.Exists(python) || !File.Exists(script))
        {
            Console.WriteLine($"PyTorch reference: skipped ({(File.Exists(python) ? script : python)} not found); ours only.");
            return null;
        }

        var start = new ProcessStartInfo(python)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(script);
        foreach (var a in scriptArgs)
        {
            start.ArgumentList.Add(a);
        }

        start.ArgumentList.Add("--serve");
        // The library sets ONEDNN_MAX_CPU_ISA in this process on AMD CPUs with AVX-512; the child gets what was asked.
        start.Environment.Remove("ONEDNN_MAX_CPU_ISA");
        start.Environment.Remove("DNNL_MAX_CPU_ISA");
        if (!string.Equals(isa, "default", StringComparison.OrdinalIgnoreCase))
        {
            start.Environment["ONEDNN_MAX_CPU_ISA"] = isa;
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("no process");
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            Console.WriteLine($"PyTorch reference: skipped ({python} did not start: {e.Message}); ours only.");
            return null;
        }

        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            lock (stderr)
            {
                stderr.AppendLine(e.Data);
            }
        };
        process.BeginErrorReadLine();
        var line = process.StandardOutput.ReadLine();
        if (line is null || !line.Contains("\"ready\"", StringComparison.Ordinal))
        {
            process.WaitForExit(10_000);
            string err;
            lock (stderr)
            {
                err = stderr.ToString().Trim();
            }

            Console.WriteLine($"PyTorch reference: skipped (the script did not start: {LastLine(err)}); ours only.");
            process.Dispose();
            return null;
        }

        var ready = JsonDocument.Parse(line).RootElement.Clone();
        var label = string.Create(
            CultureInfo.InvariantCulture,
            $"PyTorch {ready.GetProperty("torch").GetString()} ISA {ready.GetProperty("onednn_max_cpu_isa").GetString()}");
        return new PyTorchReference(process, label, ready);
    }

    /// <summary>Runs one repetition in the child and returns the seconds of each of its steps.</summary>
    public double[] RunRepetition()
    {
        _process.StandardInput.WriteLine("run");
        _process.StandardInput.Flush();
        var line = _process.StandardOutput.ReadLine() ?? throw new InvalidOperationException("The PyTorch reference exited.");
        using var doc = JsonDocument.Parse(line);
        return [.. doc.RootElement.GetProperty("seconds").EnumerateArray().Select(e => e.GetDouble())];
    }

    private static string LastLine(string text) => text.Split('\n').LastOrDefault(l => l.Trim().Length > 0)?.Trim() ?? "no output";

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            _process.StandardInput.WriteLine("quit");
            _process.StandardInput.Close();
            if (!_process.WaitForExit(10_000))
            {
                _process.Kill();
            }
        }
        catch (InvalidOperationException)
        {
        }
        catch (IOException)
        {
        }

        _process.Dispose();
    }
}
