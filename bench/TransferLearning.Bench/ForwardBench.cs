using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using TorchSharp;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Hub;

namespace TransferLearning.Bench;

/// <summary>
/// Imported ONNX ResNet18 (+ preprocess) forward, batch 32, 224×224, eval, no grad, in images/s, next to ONNX Runtime on
/// the same two ONNX files in the same run (ORT: batch 1 per call, the model's batch is fixed at 1).
/// Variants: unfrozen (BatchNorm as its own op), frozen (BatchNorm folded into the convolutions), channels_last, threads, int8.
/// With <c>--ort-int8 FILE</c> (written by <c>tools/onnx/qdq_resnet18.py</c>), ONNX Runtime's int8 kernels on the same
/// network in QDQ form, batch 32, timed in the same run.
/// Usage: forward [--batches N] [--threads T] [--ort-int8 r18_qdq.onnx]
/// </summary>
internal static class ForwardBench
{
    public static Task<int> RunAsync(string[] args)
    {
        var batches = ArgInt(args, "--batches", 3);
        var threads = ArgInt(args, "--threads", Environment.ProcessorCount);
        const int Batch = 32;
        var (prepPath, netPath) = OfflineModels.LocateResNet18();
        var rng = new Random(1);
        var data = Enumerable.Range(0, Batch * 3 * 224 * 224).Select(_ => (float)(rng.NextDouble() * 255)).ToArray();
        Console.WriteLine($"ResNet18 forward, batch {Batch}, 224x224, {batches} timed batches after 1 warm-up; cores {Environment.ProcessorCount}");

        // ONNX Runtime reference: preprocess + resnet per image.
        using var ortOptions = new SessionOptions { IntraOpNumThreads = threads, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        using var prep = new InferenceSession(prepPath, ortOptions);
        using var net = new InferenceSession(netPath, ortOptions);
        var per = 3 * 224 * 224;
        void OrtBatch()
        {
            for (var i = 0; i < Batch; i++)
            {
                var input = new DenseTensor<float>(data.AsMemory(i * per, per), [1, 3, 224, 224]);
                using var p = prep.Run([NamedOnnxValue.CreateFromTensor("OriginalInput", input)]);
                var pre = p[0].AsTensor<float>();
                using var r = net.Run([NamedOnnxValue.CreateFromTensor("Input247", pre)]);
                _ = r[0].AsTensor<float>()[0, 0, 0, 0];
            }
        }

        var ort = Measure(OrtBatch, batches, Batch);
        Console.WriteLine($"  onnxruntime (threads {threads})               {ort,8:F1} img/s  1.00x");

        using var backbone = OnnxBackboneLoader.LoadResNet18(prepPath, netPath, "resnet18", null);
        using var x = torch.tensor(data, [Batch, 3, 224, 224]);
        using var xcl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2);
        foreach (var t in new[] { 1, threads }.Distinct())
        {
            torch.set_num_threads(t);
            foreach (var (name, frozen, input) in new[] { ("unfrozen (BN op)", false, x), ("frozen (BN folded)", true, x), ("frozen, channels_last input", true, xcl) })
            {
                if (frozen)
                {
                    backbone.Freeze();
                }
                else
                {
                    backbone.Unfreeze();
                }

                backbone.SetTrainingMode(false);
                var rate = Measure(() => Forward(backbone, input), batches, Batch);
                Console.WriteLine($"  torchsharp {name,-28} threads {t}  {rate,8:F1} img/s  {rate / ort:F2}x");
            }
        }

        // Int8 (speed only: calibrated on the same random batch, so its scales say nothing about accuracy).
        backbone.Freeze();
        backbone.QuantizeInt8([x]);
        var int8 = Measure(() => Forward(backbone, x), batches, Batch);
        Console.WriteLine($"  torchsharp {"frozen, int8",-28} threads {threads}  {int8,8:F1} img/s  {int8 / ort:F2}x");

        var qdqIndex = Array.IndexOf(args, "--ort-int8");
        if (qdqIndex >= 0 && qdqIndex + 1 < args.Length)
        {
            using var qdq = new InferenceSession(args[qdqIndex + 1], ortOptions);
            var batch = new DenseTensor<float>(data, [Batch, 3, 224, 224]);
            var inputName = qdq.InputMetadata.Keys.First();
            void QdqBatch()
            {
                using var r = qdq.Run([NamedOnnxValue.CreateFromTensor(inputName, batch)]);
                _ = r[0].AsTensor<float>()[0, 0, 0, 0];
            }

            var ortInt8 = Measure(QdqBatch, batches, Batch);
            Console.WriteLine($"  onnxruntime int8 (QDQ, batch {Batch}, threads {threads})    {ortInt8,8:F1} img/s  {ortInt8 / ort:F2}x; torchsharp int8 / this {int8 / ortInt8:F2}x");
        }

        return Task.FromResult(0);
    }

    private static void Forward(Backbones.Backbone backbone, torch.Tensor x)
    {
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        _ = backbone.Forward(x).sum().item<float>();
    }

    private static double Measure(Action batch, int batches, int batchSize)
    {
        batch();
        var sw = Stopwatch.StartNew();
        for (var i = 0; i < batches; i++)
        {
            batch();
        }

        return batches * batchSize / sw.Elapsed.TotalSeconds;
    }

    private static int ArgInt(string[] args, string name, int fallback)
    {
        var i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length && int.TryParse(args[i + 1], out var v) ? v : fallback;
    }
}
