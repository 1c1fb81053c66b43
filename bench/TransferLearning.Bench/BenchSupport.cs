using System.Globalization;
using TransferLearning.Native;

namespace TransferLearning.Bench;

/// <summary>Shared bits of the side-by-side benchmarks: arguments, the machine line, medians and the results table.</summary>
internal static class BenchSupport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    private static readonly string[] CpuFeatures = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile"];

    public static string Arg(string[] args, string name, string fallback) =>
        Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;

    public static int ArgInt(string[] args, string name, int fallback) =>
        int.Parse(Arg(args, name, fallback.ToString(Inv)), Inv);

    public static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TransferLearning.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? Directory.GetCurrentDirectory();
    }

    /// <summary>CPU model, core count, the AVX-512 features that matter, and this process's oneDNN ISA setting.</summary>
    public static string MachineLine()
    {
        var model = "unknown CPU";
        var flags = new HashSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal))
                {
                    model = line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                }
                else if (line.StartsWith("flags", StringComparison.Ordinal))
                {
                    flags.UnionWith(line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Split(' ', StringSplitOptions.RemoveEmptyEntries));
                    break;
                }
            }
        }
        catch (IOException)
        {
        }

        var features = string.Join(",", CpuFeatures.Where(flags.Contains));
        var isa = Environment.GetEnvironmentVariable(TorchNativeLoader.OneDnnIsaVariable) ?? "default";
        var why = TorchNativeLoader.Status?.Split("; ").FirstOrDefault(s => s.Contains(TorchNativeLoader.OneDnnIsaVariable, StringComparison.Ordinal));
        return $"CPU: {model}, {Environment.ProcessorCount} cores, {features}; ours: ONEDNN_MAX_CPU_ISA={isa}{(why is null ? string.Empty : $" ({why})")}";
    }

    /// <summary>Stores every 4-d parameter channels-last (PyTorch's <c>model.to(memory_format=torch.channels_last)</c>).</summary>
    public static void ChannelsLastWeights(TorchSharp.torch.nn.Module module)
    {
        using var noGrad = TorchSharp.torch.no_grad();
        foreach (var p in module.parameters().Where(p => p.dim() == 4))
        {
            using var cl = p.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
            p.set_(cl);
        }
    }

    public static double Median(IReadOnlyList<double> values)
    {
        var sorted = values.Order().ToArray();
        var n = sorted.Length;
        return n == 0 ? double.NaN : n % 2 == 1 ? sorted[n / 2] : (sorted[(n / 2) - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>One side's repetitions: seconds per step (mean of the repetition's steps).</summary>
    /// <param name="name">Row label.</param>
    /// <param name="group">Configuration the side belongs to; ratios compare sides of one group.</param>
    /// <param name="isReference">Whether this is the group's reference (PyTorch).</param>
    public sealed class Side(string name, string group = "", bool isReference = false)
    {
        public string Name { get; } = name;

        public string Group { get; } = group;

        public bool IsReference { get; } = isReference;

        public List<double> SecondsPerStep { get; } = [];

        public double Median => BenchSupport.Median(SecondsPerStep);

        public void Add(IReadOnlyList<double> stepSeconds) => SecondsPerStep.Add(stepSeconds.Average());
    }

    /// <summary>
    /// Prints each side's median s/step, img/s and spread, its speed relative to the reference of its group (PyTorch with
    /// the same configuration) and, when there are several groups, relative to the same side kind in the first group.
    /// </summary>
    public static void PrintTable(IReadOnlyList<Side> sides, int batch)
    {
        Console.WriteLine();
        Console.WriteLine(string.Create(Inv, $"{"side",-48} {"reps",4} {"median s/step",13} {"img/s",8} {"min–max s/step",17} {"vs PyTorch",10}"));
        foreach (var s in sides)
        {
            if (s.SecondsPerStep.Count == 0)
            {
                continue;
            }

            var reference = sides.FirstOrDefault(r => r.IsReference && r.Group == s.Group && r.SecondsPerStep.Count > 0);
            var ratio = reference is null ? "-" : (reference.Median / s.Median).ToString("F2", Inv) + "x";
            Console.WriteLine(string.Create(
                Inv,
                $"{s.Name,-48} {s.SecondsPerStep.Count,4} {s.Median,13:F3} {batch / s.Median,8:F1} {s.SecondsPerStep.Min(),8:F3}–{s.SecondsPerStep.Max(),-8:F3} {ratio,10}"));
        }

        Console.WriteLine("vs PyTorch = (PyTorch's median s/step, same configuration) / (the row's): above 1 is faster than PyTorch.");
    }
}
