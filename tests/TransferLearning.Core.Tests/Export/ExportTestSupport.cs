using Microsoft.ML.OnnxRuntime;
using DenseTensor = Microsoft.ML.OnnxRuntime.Tensors.DenseTensor<float>;
using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Datasets.Decoding;
using TransferLearning.Heads;
using TransferLearning.Models;
using TransferLearning.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests.Export;

/// <summary>Builds models to export, feeds exported files to ONNX Runtime as the export contract says, and compares.</summary>
internal static class ExportTestSupport
{
    public static readonly string[] FlowerClasses = ["daisy", "dandelion", "roses", "sunflowers", "tulips"];

    /// <summary>
    /// When set, every model a test exports is also copied to this folder (file name = test name), for the offline
    /// ONNX checker: <c>/usr/bin/python3 tools/onnx/check_export.py DIR/*.onnx</c>.
    /// </summary>
    public const string KeepVariable = "TRANSFERLEARNING_EXPORT_KEEP_DIR";

    /// <summary>A model from a backbone and a head made by HeadFactory (seeded), without training.</summary>
    public static TrainedModel Model(Backbone backbone, InputSpec? spec = null, HeadOptions? headOptions = null, int seed = 3)
    {
        headOptions ??= new HeadOptions();
        var head = HeadFactory.Create(backbone.FeatureSize, FlowerClasses.Length, headOptions, seed);
        return new TrainedModel(backbone, head, FlowerClasses, spec ?? backbone.InputSpec, headOptions, new History(), CPU);
    }

    /// <summary>The first <paramref name="perClass"/> sample photos of every class (committed, CC BY 2.0).</summary>
    public static string[] Photos(int perClass) =>
        FlowerClasses.SelectMany(c => Directory.GetFiles(Path.Combine(RepoPaths.SamplePhotos, c)).Order(StringComparer.Ordinal).Take(perClass)).ToArray();

    /// <summary>
    /// The export's input for these photos: decoded and resized by <see cref="ImagePixels"/> as the model's InputSpec says
    /// (size, resize mode), RGB values 0..255 as float, <c>[N, 3, H, W]</c>.
    /// </summary>
    public static DenseTensor ImageInput(IReadOnlyList<string> photos, InputSpec spec)
    {
        var plane = spec.Width * spec.Height;
        var data = new float[photos.Count * 3 * plane];
        var rgb = new byte[3 * plane];
        for (var n = 0; n < photos.Count; n++)
        {
            ImagePixels.DecodeFile(photos[n], spec, rgb);
            for (var i = 0; i < plane; i++)
            {
                for (var c = 0; c < 3; c++)
                {
                    data[(((n * 3) + c) * plane) + i] = rgb[(3 * i) + c];
                }
            }
        }

        return new DenseTensor(data, [photos.Count, 3, spec.Height, spec.Width]);
    }

    /// <summary>Exports <paramref name="model"/> to a temporary file and returns its bytes (also kept when <see cref="KeepVariable"/> is set).</summary>
    public static byte[] Export(TrainedModel model, string name, OnnxExportOptions? options = null)
    {
        using var dir = new TempDir();
        var path = Path.Combine(dir.Path, name + ".onnx");
        if (options is null)
        {
            model.ExportOnnx(path);
        }
        else
        {
            model.ExportOnnx(path, options);
        }

        var bytes = File.ReadAllBytes(path);
        Keep(bytes, name);
        return bytes;
    }

    /// <summary>Writes an exported model to <see cref="KeepVariable"/>'s folder when it is set.</summary>
    public static void Keep(byte[] model, string name)
    {
        if (Environment.GetEnvironmentVariable(KeepVariable) is { Length: > 0 } keep)
        {
            Directory.CreateDirectory(keep);
            File.WriteAllBytes(Path.Combine(keep, name + ".onnx"), model);
        }
    }

    /// <summary>Runs an exported model with ONNX Runtime (default graph optimisations, as an application would).</summary>
    public static Dictionary<string, float[]> Run(byte[] model, string inputName, DenseTensor input)
    {
        using var session = new InferenceSession(model);
        using var results = session.Run([NamedOnnxValue.CreateFromTensor(inputName, input)]);
        return results.ToDictionary(r => r.Name, r => r.AsEnumerable<float>().ToArray());
    }

    /// <summary>
    /// Exports the model, runs ONNX Runtime on the photos (prepared as the contract says) and asserts that its
    /// probabilities match <see cref="TrainedModel.Predict(IEnumerable{string}, int, int, CancellationToken)"/> within
    /// 1e-4 absolute with the same top-1 for every photo; also checks the logits output.
    /// </summary>
    public static void AssertParity(TrainedModel model, IReadOnlyList<string> photos, string name, ITestOutputHelper output)
    {
        var exported = Export(model, name);
        var ort = Run(exported, "image", ImageInput(photos, model.InputSpec));
        var predictions = model.Predict(photos, topK: 1);
        var classes = model.Classes.Count;
        var expected = predictions.SelectMany(p => p.Probabilities).ToArray();
        var actual = ort["probabilities"];
        Assert.Equal(expected.Length, actual.Length);
        var maxDiff = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        var spread = expected.Max() - expected.Min();
        output.WriteLine($"{name}: {photos.Count} photos, max |probability diff| {maxDiff:G3} (probabilities span {expected.Min():G3}..{expected.Max():G3})");
        Assert.True(maxDiff <= 1e-4, $"{name}: ONNX Runtime's probabilities differ from the model's by up to {maxDiff:G4}.");
        for (var n = 0; n < photos.Count; n++)
        {
            var row = actual.AsSpan(n * classes, classes).ToArray();
            var top = Array.IndexOf(row, row.Max());
            Assert.True(predictions[n].Index == top, $"{name}: top-1 differs on {photos[n]}: model {predictions[n].Label}, ONNX Runtime {model.Classes[top]}.");
        }

        Assert.True(spread > 0.05, $"{name}: the probabilities hardly vary ({spread:G3}); the comparison would prove little.");

        // The logits output is the head's output before the softmax.
        using var noGrad = no_grad();
        using var images = stack(photos.Select(p => ImageTensor.FromFile(p, model.InputSpec)).ToArray());
        using var logits = model.Logits(images);
        Onnx.OrtReference.AssertClose(logits.data<float>().ToArray(), ort["logits"], 1e-4, name + " logits");
    }

    /// <summary>Sets every BatchNorm's statistics and affine parameters to seeded non-trivial values (eval-mode BN then does something).</summary>
    public static void RandomizeBatchNorm(nn.Module module, int seed)
    {
        using var generator = new Generator((ulong)seed, CPU);
        using var noGrad = no_grad();
        foreach (var bn in module.modules().OfType<TorchSharp.Modules.BatchNorm2d>())
        {
            Fill(bn.running_mean!, -0.1, 0.1);
            Fill(bn.running_var!, 0.5, 1.5);
            Fill(bn.weight!, 0.8, 1.2);
            Fill(bn.bias!, -0.1, 0.1);
        }

        void Fill(Tensor t, double low, double high)
        {
            using var values = rand(t.shape, generator: generator);
            t.copy_(values.mul_(high - low).add_(low));
        }
    }

    /// <summary>
    /// Draws every convolution's and Linear layer's weights again from a private generator, as torchvision initialises
    /// them (convolutions: normal with standard deviation √(2 / fan-out); Linear: 0.01; biases zero): a network made
    /// with the global generator would depend on which tests ran before it.
    /// </summary>
    public static void ReinitializeWeights(nn.Module module, int seed)
    {
        using var generator = new Generator((ulong)seed, CPU);
        using var noGrad = no_grad();
        foreach (var conv in module.modules().OfType<TorchSharp.Modules.Conv2d>())
        {
            var w = conv.weight!;
            using var values = randn(w.shape, generator: generator);
            w.copy_(values.mul_(Math.Sqrt(2.0 / (w.shape[0] * w.shape[2] * w.shape[3]))));
            conv.bias?.zero_();
        }

        foreach (var linear in module.modules().OfType<TorchSharp.Modules.Linear>())
        {
            using var values = randn(linear.weight!.shape, generator: generator);
            linear.weight.copy_(values.mul_(0.01));
            linear.bias?.zero_();
        }
    }

    /// <summary>Multiplies the head's last Linear layer by <paramref name="factor"/> (sharper probabilities).</summary>
    public static void Scale(TrainedModel model, double factor)
    {
        using var noGrad = no_grad();
        var last = model.Head.modules().OfType<TorchSharp.Modules.Linear>().Last();
        last.weight!.mul_(factor);
        last.bias?.mul_(factor);
    }

    /// <summary>Changes every third floating-point parameter of <paramref name="module"/> by a seeded ±5% (what fine-tuning does, in small).</summary>
    public static void Perturb(nn.Module module, int seed)
    {
        using var generator = new Generator((ulong)seed, CPU);
        using var noGrad = no_grad();
        var i = 0;
        foreach (var p in module.parameters())
        {
            if (i++ % 3 == 0)
            {
                using var noise = rand(p.shape, generator: generator);
                using var factor = noise.mul_(0.1).add_(0.95);
                p.mul_(factor);
            }
        }
    }
}
