using System.Diagnostics;
using System.Globalization;
using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Hub;
using TransferLearning.Native;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Bench;

/// <summary>
/// One frozen backbone in float, int8 and bf16, on the same batch of real photos: forward images/s (the three measured
/// in turn, batch after batch, best batch of each, so machine load hits them alike), calibration time, and each one's cosine similarity to
/// the float features (worst and mean photo). bf16 runs where the CPU has native kernels, or emulated with --force-bf16.
/// --reference FILE compares with float features of another process instead (written there when FILE does not exist):
/// a process started with a different <c>ONEDNN_MAX_CPU_ISA</c> then measures against the default cap's float.
/// Usage: precision [--model SOURCE (default ../shared/models/teachable-machine-mobilenetv2/model.json)] [--data DIR]
/// [--batch 32] [--iterations 8] [--size N] [--force-bf16] [--int8-every-conv] [--reference FILE]
/// </summary>
internal static class PrecisionBench
{
    public static Task<int> RunAsync(string[] args)
    {
        string Arg(string name, string fallback) =>
            Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var inv = CultureInfo.InvariantCulture;
        TorchNativeLoader.EnsureLoaded();
        var source = Arg("--model", Path.Combine("..", "shared", "models", "teachable-machine-mobilenetv2", "model.json"));
        var batch = int.Parse(Arg("--batch", "32"), inv);
        var iterations = int.Parse(Arg("--iterations", "8"), inv);
        var folder = ImageFolder.Load(Arg("--data", Path.Combine("..", "shared", "data", "flowers")));
        Console.WriteLine($"cpu: {File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':')[1].Trim()}; {get_num_threads()} threads; {TorchNativeLoader.Status}");
        Console.WriteLine($"int8: {Int8Kernels.Description}");
        Console.WriteLine($"bf16: {Bf16Kernels.Unavailable ?? "native kernels"}");

        // One backbone per precision, measured in turn batch by batch, so that the machine's load hits them alike.
        using var floatBackbone = Load(source);
        var spec = Arg("--size", string.Empty) is { Length: > 0 } size ? floatBackbone.InputSpec.WithSize(int.Parse(size, inv), int.Parse(size, inv)) : floatBackbone.InputSpec;
        var calibrationCount = TrainingOptions.DefaultInt8CalibrationImages;
        var step = Math.Max(1, folder.Samples.Count / (batch + calibrationCount));
        var spread = folder.Samples.Where((_, i) => i % step == 0).ToList();
        using var photos = stack(spread.Take(batch).Select(s => ImageTensor.FromFile(s.Path, spec)).ToArray());
        using var calibration = stack(spread.Skip(batch).Take(calibrationCount).Select(s => ImageTensor.FromFile(s.Path, spec)).ToArray());
        Console.WriteLine($"model {source}, input {spec.Width}×{spec.Height}, batch {batch} photos, {iterations} rounds");

        using var noGrad = no_grad();
        using var ownFloat = floatBackbone.Forward(photos);
        var referenceFile = Arg("--reference", string.Empty);
        using var reference = referenceFile.Length > 0 && File.Exists(referenceFile) ? ReadFeatures(referenceFile) : ownFloat.alias();
        if (referenceFile.Length > 0 && !File.Exists(referenceFile))
        {
            WriteFeatures(ownFloat, referenceFile);
            Console.WriteLine($"float features written to {referenceFile}");
        }
        else if (referenceFile.Length > 0)
        {
            Console.WriteLine($"reference: float features from {referenceFile}; this process's float to them: {Cosine(ownFloat, reference)} (worst, mean photo)");
        }
        var runs = new List<(string Name, Backbone Backbone, double Preparation)> { ("float", floatBackbone, 0) };

        var int8Backbone = Load(source);
        var clock = Stopwatch.StartNew();
        int8Backbone.QuantizeInt8([.. Enumerable.Range(0, 4).Select(i => calibration.narrow(0, i * 16, 16))]);
        runs.Add(("int8", int8Backbone, clock.Elapsed.TotalSeconds));
        var parameters = int8Backbone.Int8Parameters!;
        Console.WriteLine($"int8: {parameters.Activations.Values.Count(a => a.Levels == Int8Kernels.EightBit)}/{parameters.Activations.Count} activations 8-bit, {parameters.ChannelScales.Count} equalised, {parameters.FloatConvs.Count} convolutions kept in float");

        if (args.Contains("--int8-every-conv"))
        {
            // The same calibration without mixed precision: what keeping convolutions in float costs in speed.
            var every = Load(source);
            clock.Restart();
            every.EnableInt8(parameters with { FloatConvs = new HashSet<string>() });
            runs.Add(("int8, every conv", every, clock.Elapsed.TotalSeconds));
        }

        if (Bf16Kernels.Available || args.Contains("--force-bf16"))
        {
            var bf16Backbone = Load(source);
            clock.Restart();
            if (Bf16Kernels.Available)
            {
                bf16Backbone.EnableBf16();
            }
            else
            {
                bf16Backbone.EnableBf16Unchecked();
            }

            runs.Add((Bf16Kernels.Available ? "bf16" : "bf16 (emulated)", bf16Backbone, clock.Elapsed.TotalSeconds));
        }

        var best = runs.Select(_ => double.MaxValue).ToArray();
        var cosines = new string[runs.Count];
        for (var r = 0; r < runs.Count; r++)
        {
            using var features = runs[r].Backbone.Forward(photos); // warm-up (kernel selection, packing)
            cosines[r] = Cosine(features, reference);
        }

        for (var i = 0; i < iterations; i++)
        {
            for (var r = 0; r < runs.Count; r++)
            {
                clock.Restart();
                runs[r].Backbone.Forward(photos).Dispose();
                best[r] = Math.Min(best[r], clock.Elapsed.TotalSeconds);
            }
        }

        Console.WriteLine();
        Console.WriteLine("| backbone | images/s (best batch) | × float | calibration / preparation (s) | cosine to float (worst, mean photo) |");
        Console.WriteLine("| --- | --- | --- | --- | --- |");
        for (var r = 0; r < runs.Count; r++)
        {
            Console.WriteLine(string.Create(inv, $"| {runs[r].Name} | {batch / best[r]:F1} | {best[0] / best[r]:F2} | {runs[r].Preparation:F1} | {cosines[r]} |"));
        }

        foreach (var run in runs.Skip(1))
        {
            run.Backbone.Dispose();
        }

        return Task.FromResult(0);
    }

    private static Backbone Load(string source)
    {
        var backbone = ModelHub.LoadBackbone(source);
        backbone.Freeze();
        backbone.SetTrainingMode(false);
        return backbone;
    }

    /// <summary>Features <c>[N, F]</c> as two little-endian int64 (N, F) and N·F float32.</summary>
    private static void WriteFeatures(Tensor features, string path)
    {
        using var flat = features.reshape(features.shape[0], -1).contiguous();
        using var writer = new BinaryWriter(File.Create(path));
        writer.Write(flat.shape[0]);
        writer.Write(flat.shape[1]);
        foreach (var v in flat.data<float>())
        {
            writer.Write(v);
        }
    }

    private static Tensor ReadFeatures(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        var (n, f) = (reader.ReadInt64(), reader.ReadInt64());
        var values = new float[n * f];
        for (var i = 0; i < values.Length; i++)
        {
            values[i] = reader.ReadSingle();
        }

        return tensor(values, [n, f]);
    }

    private static string Cosine(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        var cosine = nn.functional.cosine_similarity(a, b, 1);
        return string.Create(CultureInfo.InvariantCulture, $"{cosine.min().item<float>():F4}, {cosine.mean().item<float>():F4}");
    }
}
