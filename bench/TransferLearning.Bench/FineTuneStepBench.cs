using System.Diagnostics;
using TransferLearning.Backbones.TorchVision;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Bench;

/// <summary>
/// Fine-tune train step of a torchvision architecture (random weights, batch 32, Linear head over 5 classes, BatchNorm
/// in inference mode as the library's default fine-tuning, Adam lr 1e-5), ours through the library's trainer next to
/// PyTorch's (<c>tools/pytorch/reference_bench.py --mode finetune</c>) in the same run. <c>--from</c> lists the
/// configurations: <c>all</c> (<c>Unfreeze()</c>) and/or a block name (<c>Unfreeze("layer4")</c>: earlier blocks frozen
/// on both sides). Repetitions alternate between every side and configuration; each times <c>--steps</c> steps after
/// one warm-up repetition. Our step is timed from the trainer's progress report after one step to the next, so it
/// includes the trainer's whole loop (batch fetch, forward, loss, backward, Adam, loss/accuracy read-back).
/// Usage: finetune-step [--arch resnet18] [--from all,layer4] [--reps 5] [--steps 2] [--batch 32] [--threads 2]
///        [--python-isa default[,AVX2]] [--no-python] [--unfolded (also ours with BatchNorm unfolded)]
///        [--no-trim (no native heap trimming between steps)] [--trim-ab (also ours with the other trim setting)]
///        [--cl-weights (also ours with conv weights stored channels-last)]
///        [--slices 16,32 (also ours with these training slice sizes; the default is Backbone.InferenceSliceSize)]
///        [--bf16 (also ours training the backbone in bf16 with float master weights: TrainingOptions.Bf16Backbone)]
/// </summary>
internal static class FineTuneStepBench
{
    private const int Classes = 5;

    public static Task<int> RunAsync(string[] args)
    {
        Native.TorchNativeLoader.EnsureLoaded();
        var arch = BenchSupport.Arg(args, "--arch", "resnet18");
        var froms = BenchSupport.Arg(args, "--from", "all").Split(',');
        var reps = BenchSupport.ArgInt(args, "--reps", 5);
        var steps = BenchSupport.ArgInt(args, "--steps", 2);
        var batch = BenchSupport.ArgInt(args, "--batch", 32);
        var threads = BenchSupport.ArgInt(args, "--threads", 2);
        set_num_threads(threads);
        NativeHeap.Enabled = !args.Contains("--no-trim");
        Console.WriteLine(BenchSupport.MachineLine());
        Console.WriteLine(
            $"finetune-step: torchvision {arch}, random weights, batch {batch}, 224x224, {Classes} classes, BN in inference mode, Adam, " +
            $"{threads} threads, {reps} reps x {steps} steps; configurations: {string.Join(", ", froms)}" +
            (NativeHeap.Enabled ? string.Empty : "; native heap trimming off"));

        var runners = new List<(BenchSupport.Side Side, Func<double[]> Run)>();
        var disposables = new List<IDisposable>();
        try
        {
            foreach (var from in froms)
            {
                var variants = new List<(string Suffix, bool Fold, bool ChannelsLast, bool Trim, int? Slice, bool Bf16)> { (string.Empty, true, false, NativeHeap.Enabled, null, false) };
                foreach (var size in BenchSupport.Arg(args, "--slices", string.Empty).Split(',', StringSplitOptions.RemoveEmptyEntries))
                {
                    variants.Add(($", slices of {size}", true, false, NativeHeap.Enabled, int.Parse(size, System.Globalization.CultureInfo.InvariantCulture), false));
                }

                if (args.Contains("--unfolded"))
                {
                    variants.Add((", BN unfolded", false, false, NativeHeap.Enabled, null, false));
                }

                if (args.Contains("--cl-weights"))
                {
                    variants.Add((", cl weights", true, true, NativeHeap.Enabled, null, false));
                }

                if (args.Contains("--trim-ab"))
                {
                    variants.Add((", heap trim " + (NativeHeap.Enabled ? "off" : "on"), true, false, !NativeHeap.Enabled, null, false));
                }

                if (args.Contains("--bf16"))
                {
                    variants.Add((", bf16", true, false, NativeHeap.Enabled, null, true));
                }

                foreach (var (suffix, fold, channelsLast, trim, slice, bf16) in variants)
                {
                    var ours = new TrainerRunner(arch, from, batch, threads, steps, 1 + reps, fold, channelsLast, trim, slice, bf16);
                    disposables.Add(ours);
                    var name = $"ours, from {from}{suffix}";
                    Console.WriteLine($"  {name}: {ours.TrainableParameters:N0} trainable parameters");
                    runners.Add((new BenchSupport.Side(name, from), () =>
                    {
                        var seconds = ours.RunRepetition();
                        Console.WriteLine($"         ({name}: {ours.MinorFaultsPerStep:N0} minor page faults per step)");
                        return seconds;
                    }));
                }
            }

            if (!args.Contains("--no-python"))
            {
                foreach (var isa in BenchSupport.Arg(args, "--python-isa", "default").Split(','))
                {
                    foreach (var from in froms)
                    {
                        string[] scriptArgs = ["--mode", "finetune", "--arch", arch, "--batch", $"{batch}", "--threads", $"{threads}", "--steps", $"{steps}", "--classes", $"{Classes}"];
                        var py = PyTorchReference.TryStart(from == "all" ? scriptArgs : [.. scriptArgs, "--from", from], isa);
                        if (py is null)
                        {
                            goto started;
                        }

                        disposables.Add(py);
                        Console.WriteLine($"  {py.Label}, from {from}: {py.Info.GetProperty("trainable_parameters").GetInt64():N0} trainable parameters");
                        var side = new BenchSupport.Side($"{py.Label}, from {from}", from, isReference: !runners.Any(r => r.Side.IsReference && r.Side.Group == from));
                        runners.Add((side, py.RunRepetition));
                    }
                }
            }

        started:
            TorchForwardBench.Alternate(runners, reps);
            BenchSupport.PrintTable([.. runners.Select(r => r.Side)], batch);
            PrintSavings(runners.Select(r => r.Side).ToList(), froms);
        }
        finally
        {
            foreach (var d in disposables)
            {
                d.Dispose();
            }
        }

        return Task.FromResult(0);
    }

    /// <summary>Each configuration's step time relative to the first one's (e.g. layer4-only vs full), per side kind.</summary>
    private static void PrintSavings(List<BenchSupport.Side> sides, string[] froms)
    {
        if (froms.Length < 2)
        {
            return;
        }

        sides = [.. sides.Where(s => !s.Name.StartsWith("ours", StringComparison.Ordinal) || s.Name == $"ours, from {s.Group}")];
        foreach (var kind in new[] { "ours", "PyTorch" })
        {
            var first = sides.FirstOrDefault(s => s.Name.StartsWith(kind, StringComparison.Ordinal) && s.Group == froms[0] && s.SecondsPerStep.Count > 0);
            foreach (var s in sides.Where(s => first is not null && s != first && s.Name.StartsWith(kind, StringComparison.Ordinal) && s.SecondsPerStep.Count > 0))
            {
                Console.WriteLine(string.Create(
                    System.Globalization.CultureInfo.InvariantCulture,
                    $"{kind}: from {s.Group} takes {s.Median / first!.Median:P0} of the from-{froms[0]} step ({first.Median - s.Median:F3} s saved per step)"));
            }
        }
    }

    /// <summary>
    /// The library's <see cref="Trainer"/> fitting one epoch on its own thread; it pauses after every <c>steps</c> steps
    /// (in the progress callback, outside the timed span) until the next repetition is asked for.
    /// </summary>
    private sealed class TrainerRunner : IDisposable
    {
        private readonly SemaphoreSlim _go = new(0);
        private readonly SemaphoreSlim _done = new(0);
        private readonly Thread _thread;
        private readonly int _steps;
        private readonly List<double> _times = [];
        private readonly Stopwatch _clock = new();
        private readonly bool _trim;
        private Exception? _error;
        private bool _finished;

        public TrainerRunner(string arch, string from, int batch, int threads, int steps, int repetitions, bool fold, bool channelsLastWeights, bool trim, int? slice, bool bf16)
        {
            _steps = steps;
            _trim = trim;
            var backbone = TorchVisionBackbones.CreateBackbone(arch);
            BatchNormFolding.SetEnabled(backbone.Module, fold);
            if (channelsLastWeights)
            {
                BenchSupport.ChannelsLastWeights(backbone.Module);
            }

            if (from == "all")
            {
                backbone.Unfreeze();
            }
            else
            {
                backbone.Unfreeze(from);
            }

            var head = HeadFactory.Create(backbone.FeatureSize, Classes, new HeadOptions(), 42);
            TrainableParameters = backbone.Module.parameters().Where(p => p.requires_grad).Sum(p => p.numel())
                + head.parameters().Sum(p => p.numel());
            var options = new TrainingOptions { LearningRate = 1e-5, BatchSize = batch, TrainingSliceSize = slice, Bf16Backbone = bf16 };
            var source = new RepeatedBatch(batch, steps * repetitions);
            _thread = new Thread(() =>
            {
                try
                {
                    set_num_threads(threads);
                    var trainer = new Trainer(backbone, head, CPU, options, classWeights: null);
                    _go.Wait();
                    _clock.Restart();
                    trainer.Fit(source, validation: null, inputsAreFeatures: false, epochs: 1, new History(), new StepProgress(this), CancellationToken.None);
                }
                catch (Exception e)
                {
                    _error = e;
                }
                finally
                {
                    _finished = true;
                    source.Dispose();
                    head.Dispose();
                    backbone.Dispose();
                    _done.Release();
                }
            })
            {
                IsBackground = true,
                Name = $"trainer {arch} from {from}",
            };
            _thread.Start();
        }

        public long TrainableParameters { get; }

        /// <summary>Minor page faults per step in the last repetition (memory handed back to the OS and touched again).</summary>
        public double MinorFaultsPerStep { get; private set; }

        /// <summary>This process's minor page faults so far (Linux; 0 elsewhere).</summary>
        private static long MinorFaults()
        {
            try
            {
                var stat = File.ReadAllText("/proc/self/stat");
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                return long.Parse(fields[7], System.Globalization.CultureInfo.InvariantCulture); // field 10, minflt
            }
            catch (Exception e) when (e is IOException or FormatException or IndexOutOfRangeException or UnauthorizedAccessException)
            {
                return 0;
            }
        }

        public double[] RunRepetition()
        {
            if (_finished)
            {
                throw new InvalidOperationException("The trainer has finished.", _error);
            }

            NativeHeap.Enabled = _trim; // a process-wide switch: set for this side's repetition
            var faults = MinorFaults();
            _go.Release();
            _done.Wait();
            MinorFaultsPerStep = (MinorFaults() - faults) / (double)_steps;
            if (_error is not null)
            {
                throw new InvalidOperationException("The trainer failed.", _error);
            }

            var times = _times.ToArray();
            _times.Clear();
            return times;
        }

        public void Dispose()
        {
            while (!_finished)
            {
                _go.Release();
                _done.Wait();
            }

            _thread.Join();
            _go.Dispose();
            _done.Dispose();
        }

        private void OnStep()
        {
            _times.Add(_clock.Elapsed.TotalSeconds);
            if (_times.Count == _steps)
            {
                _done.Release();
                _go.Wait();
            }

            _clock.Restart();
        }

        private sealed class StepProgress(TrainerRunner runner) : IProgress<TrainingProgress>
        {
            public void Report(TrainingProgress value)
            {
                if (value.Phase == TrainingPhase.Training)
                {
                    runner.OnStep();
                }
            }
        }
    }

    /// <summary>The same random batch (and labels) <c>count</c> times, as the PyTorch side reuses one batch.</summary>
    private sealed class RepeatedBatch : IBatchSource, IDisposable
    {
        private readonly Tensor _images;
        private readonly Tensor _labels;

        public RepeatedBatch(int batch, int batches)
        {
            using var generator = new Generator(1);
            _images = randn(batch, 3, 224, 224, generator: generator);
            _labels = randint(0, Classes, [batch], generator: generator);
            Batches_ = batches;
            Count = batch * batches;
        }

        public int Count { get; }

        public IReadOnlyList<SkippedImage> Skipped => [];

        private int Batches_ { get; }

        public IEnumerable<LabeledBatch> Batches(int epoch, CancellationToken cancellationToken)
        {
            for (var i = 0; i < Batches_; i++)
            {
                yield return new LabeledBatch(_images.alias(), _labels.alias());
            }
        }

        public void Dispose()
        {
            _images.Dispose();
            _labels.Dispose();
        }
    }
}
