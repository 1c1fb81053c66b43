using System.Diagnostics;
using System.Globalization;
using TransferLearning.Backbones.Onnx;
using TransferLearning.Datasets;
using TransferLearning.Datasets.Pipeline;
using TransferLearning.Hub;
using static TorchSharp.torch;

namespace TransferLearning.Bench;

/// <summary>
/// Experiment behind <see cref="BackboneFeatures.MultiStage"/>: which frozen ResNet18 features does a linear head do best
/// on? The photos (split 70/30, seed 42) are featurized once per configuration, then Adam heads (batch 32) train on the
/// cached features with several seeds in milliseconds each.
/// <list type="bullet">
/// <item>Default: the offline resnet18's layer3 and layer4 maps, computed by two modules cut from its graph with the
/// preprocessing's mean image resized to each size (so sizes other than 224 run); average and max pooling of each;
/// heads on l4avg, l4avg+l3avg and all four, with no normalisation, standardisation, or a BatchNorm (with or without
/// affine) in front. <c>--configs "224:Stretch;224:CenterCrop;256:Stretch"</c> chooses sizes and resize modes.</item>
/// <item><c>--library</c>: the library's own multi-stage resnet18 at 224, center crop, standardised, with head variants
/// (weight decay, label smoothing, dropout, a lower rate). <c>--cache DIR</c> keeps its features in files for the next
/// run. With <c>--flip</c>: heads that also use the training photos' mirrored features (concatenated, alternating by
/// epoch, averaged). With <c>--transforms</c>: ten seeds each of features averaged with the mirror's (training and
/// validation, or validation only), square-rooted, or both. With <c>--trainer</c>: the library's own trainer, head
/// factory and standardisation on the same features (cached in a shuffled order, as the library's loader yields them),
/// next to the probe's head, ten seeds.</item>
/// </list>
/// Usage: feature-probe --data DIR [--configs LIST | --library [--cache DIR] [--flip | --transforms | --trainer]]
/// </summary>
internal static class FeatureProbe
{
    private const string Layer3 = "ReLU347_Output_0";
    private const string Layer4 = "ReLU393_Output_0";

    public static Task<int> RunAsync(string[] args)
    {
        string Arg(string name, string fallback) =>
            Array.IndexOf(args, name) is var i and >= 0 && i + 1 < args.Length ? args[i + 1] : fallback;
        var split = ImageFolder.Load(Arg("--data", "../shared/data/flowers")).Split(0.7, seed: 42);
        var classes = split.Classes.Count;
        if (args.Contains("--library"))
        {
            using var backbone = ModelHub.LoadBackbone("resnet18", new BackboneLoadOptions { Features = BackboneFeatures.MultiStage });
            backbone.Freeze();
            backbone.SetTrainingMode(false);
            var spec = backbone.InputSpec.WithResizeMode(ResizeMode.CenterCrop);
            var cache = Arg("--cache", string.Empty);
            (Tensor, Tensor) Cached(string name, ImageDataset data, Func<Tensor, Tensor> forward)
            {
                var (file, labelFile) = (Path.Combine(cache, name + ".pt"), Path.Combine(cache, name + ".labels.pt"));
                if (cache.Length > 0 && File.Exists(file))
                {
                    return (Tensor.Load(file), Tensor.Load(labelFile));
                }

                var (f, l) = Featurize(data, spec, forward);
                if (cache.Length > 0)
                {
                    Directory.CreateDirectory(cache);
                    f.save(file);
                    l.save(labelFile);
                }

                return (f, l);
            }

            var (train, trainY) = Cached("train", split.Train, backbone.Forward);
            var (val, valY) = Cached("val", split.Validation, backbone.Forward);
            if (args.Contains("--transforms"))
            {
                var (trainM, _) = Cached("train-mirror", split.Train, x => backbone.Forward(x.flip(3)));
                var (valM, _) = Cached("val-mirror", split.Validation, x => backbone.Forward(x.flip(3)));
                var variants = new (string Name, Tensor Train, Tensor Val, Tensor? Mirror)[]
                {
                    ("base", train, val, null),
                    ("sqrt", train.clamp_min(0).sqrt(), val.clamp_min(0).sqrt(), null),
                    ("flipmean", (train + trainM) / 2, (val + valM) / 2, null),
                    ("flipmean sqrt", ((train + trainM) / 2).clamp_min(0).sqrt(), ((val + valM) / 2).clamp_min(0).sqrt(), null),
                    ("concat, val flipmean", train, (val + valM) / 2, trainM),
                    ("valtta only", train, (val + valM) / 2, null),
                };
                foreach (var (name, tr, va, mi) in variants)
                {
                    var head = mi is null ? Std("std") : Std("std concat") with { Flip = FlipUse.Concat };
                    Report("library center " + name, head, Enumerable.Range(0, 10).Select(seed => Train(tr, trainY, va, valY, head, classes, seed, mi)).ToList());
                }

                return Task.FromResult(0);
            }

            if (args.Contains("--trainer"))
            {
                // The same features through the library's own trainer, head factory and standardization.
                foreach (var seed in Enumerable.Range(0, 10))
                {
                    using var scope = NewDisposeScope();
                    // Cached in a shuffled order, as the library's loader yields them.
                    var shuffled = randperm(train.shape[0], generator: new Generator((ulong)(seed + 1000)));
                    var (tr, va, trY) = (train.index_select(0, shuffled), val.clone(), trainY.index_select(0, shuffled));
                    using (var standardization = Training.FeatureStandardization.Of([tr]))
                    {
                        standardization.Apply(tr);
                        standardization.Apply(va);
                    }

                    var options = new Training.TrainingOptions { Seed = seed };
                    var head = Heads.HeadFactory.Create((int)tr.shape[1], classes, new Heads.HeadOptions(), seed);
                    var trainer = new Training.Trainer(backbone, head, CPU, options, null);
                    var pass = trainer.Fit(new Training.TensorBatchSource(tr, trY, 32, true, seed), new Training.TensorBatchSource(va, valY.clone(), 32, false, seed),
                        inputsAreFeatures: true, 6, new Training.History(), null, default);
                    Console.WriteLine($"library trainer seed {seed}: val {pass!.Accuracy:F4}; probe head seed {seed}: {Train(train, trainY, val, valY, Std("base"), classes, seed):F4}");
                }

                return Task.FromResult(0);
            }

            if (args.Contains("--flip"))
            {
                var (mirrored, _) = Featurize(split.Train, spec, x => backbone.Forward(x.flip(3)));
                foreach (var v in new[]
                {
                    Std("base"), Std("flip-concat") with { Flip = FlipUse.Concat }, Std("flip-concat-3ep") with { Flip = FlipUse.Concat, Epochs = 3 },
                    Std("flip-alternate") with { Flip = FlipUse.Alternate }, Std("flip-concat-10ep") with { Flip = FlipUse.Concat, Epochs = 10 },
                    Std("flip-mean") with { Flip = FlipUse.Mean },
                })
                {
                    Report("library center flip", v, Enumerable.Range(0, 4).Select(seed => Train(train, trainY, val, valY, v, classes, seed, mirrored)).ToList());
                }

                return Task.FromResult(0);
            }

            foreach (var v in new[]
            {
                Std("base"), Std("wd0.01") with { Wd = 0.01 }, Std("wd0.05") with { Wd = 0.05 }, Std("wd0.2") with { Wd = 0.2 },
                Std("ls0.1") with { Ls = 0.1 }, Std("drop0.3") with { Dropout = 0.3 }, Std("drop0.5") with { Dropout = 0.5 },
                Std("lr3e-4") with { Lr = 3e-4 }, Std("ls0.1+drop0.3") with { Ls = 0.1, Dropout = 0.3 }, Std("wd0.05+ls0.1") with { Wd = 0.05, Ls = 0.1 },
            })
            {
                Report("library center all", v, Enumerable.Range(0, 4).Select(seed => Train(train, trainY, val, valY, v, classes, seed)).ToList());
            }

            return Task.FromResult(0);
        }

        var (prepPath, netPath) = OfflineModels.LocateResNet18();
        using var meanImage = OnnxGraphModule.ToTensor(OnnxBackboneLoader.Read(prepPath).Graph.Initializer.Single(t => t.Name == "MeanImage"));
        using var lower = new OnnxGraphModule(OnnxBackboneLoader.Read(netPath), "lower", inputName: "Input247", outputName: Layer3);
        var rest = OnnxBackboneLoader.Read(netPath);
        var cut = rest.Graph.Node.ToList().FindIndex(n => n.Output.Contains(Layer3));
        for (var i = cut; i >= 0; i--)
        {
            rest.Graph.Node.RemoveAt(i); // the graph is in topological order: everything up to layer3's output
        }

        rest.Graph.Input.Add(new global::Onnx.ValueInfoProto { Name = Layer3 });
        using var upper = new OnnxGraphModule(rest, "upper", inputName: Layer3, outputName: Layer4);
        foreach (var m in new[] { lower, upper })
        {
            foreach (var p in m.parameters())
            {
                p.requires_grad = false;
            }

            m.eval();
        }

        foreach (var config in Arg("--configs", "224:Stretch;224:CenterCrop;256:Stretch;288:Stretch").Split(';'))
        {
            var size = int.Parse(config.Split(':')[0], CultureInfo.InvariantCulture);
            var spec = new InputSpec(size, size, 0f, 255f, ChannelOrder.Rgb).WithResizeMode(Enum.Parse<ResizeMode>(config.Split(':')[1]));
            using var mean = nn.functional.interpolate(meanImage, [size, size], mode: InterpolationMode.Bilinear, align_corners: false);
            Tensor Forward(Tensor x)
            {
                var l3 = lower.forward(x.flip(1) - mean); // the preprocessing: RGB to BGR, minus the mean image
                var l4 = upper.forward(l3);
                return cat([l4.mean([2, 3]), l4.amax([2, 3]), l3.mean([2, 3]), l3.amax([2, 3])], 1);
            }

            var clock = Stopwatch.StartNew();
            var (train, trainY) = Featurize(split.Train, spec, Forward);
            var (val, valY) = Featurize(split.Validation, spec, Forward);
            Console.WriteLine($"{config}: features {clock.Elapsed.TotalSeconds:F1} s");

            // Columns: l4avg 0..511, l4max 512..1023, l3avg 1024..1279, l3max 1280..1535.
            foreach (var (name, columns) in new (string, long[])[] { ("l4avg", Range(0, 512)), ("l4avg+l3avg", [.. Range(0, 512), .. Range(1024, 256)]), ("all", Range(0, 1536)) })
            {
                using var index = tensor(columns);
                using var tr = train.index_select(1, index);
                using var va = val.index_select(1, index);
                foreach (var norm in new[] { Norm.None, Norm.Standardize, Norm.BatchNorm, Norm.AffineBatchNorm })
                {
                    var head = new Head(norm.ToString()) { Norm = norm };
                    Report($"{config} {name}", head, Enumerable.Range(0, 3).Select(seed => Train(tr, trainY, va, valY, head, classes, seed)).ToList());
                }
            }
        }

        return Task.FromResult(0);
    }

    private enum Norm
    {
        None,
        Standardize,
        BatchNorm,
        AffineBatchNorm,
    }

    private static Head Std(string name) => new(name) { Norm = Norm.Standardize };

    private static void Report(string features, Head head, List<double> accuracies) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{features,-28} {head.Name,-16}: val {string.Join(" ", accuracies.Select(x => x.ToString("F4", CultureInfo.InvariantCulture)))} mean {accuracies.Average():F4}"));

    private static long[] Range(int start, int count) => [.. Enumerable.Range(start, count).Select(i => (long)i)];

    /// <summary>Features and labels of every image, in the data set's order.</summary>
    private static (Tensor Features, Tensor Labels) Featurize(ImageDataset data, InputSpec spec, Func<Tensor, Tensor> forward)
    {
        using var loader = new ImageLoader(data, spec, new ImageLoaderOptions { BatchSize = 8 });
        var features = new List<Tensor>();
        var labels = new List<long>();
        using var noGrad = no_grad();
        foreach (var batch in loader.Batches())
        {
            using var b = batch;
            using var scope = NewDisposeScope();
            features.Add(forward(tensor(b.Pixels.ToArray(), [b.Count, 3, spec.Height, spec.Width])).MoveToOuterDisposeScope());
            labels.AddRange(b.Labels.Select(l => (long)l));
        }

        var all = cat(features, 0);
        features.ForEach(f => f.Dispose());
        return (all, tensor(labels.ToArray()));
    }

    /// <summary>Trains one linear head (PyTorch's default initialisation from a seeded generator, AdamW, batch 32) and returns its validation accuracy.</summary>
    private static double Train(Tensor train, Tensor trainY, Tensor val, Tensor valY, Head h, int classes, int seed, Tensor? mirrored = null)
    {
        using var scope = NewDisposeScope();
        var (tr, va, mi) = (train, val, mirrored);
        if (h.Norm == Norm.Standardize)
        {
            var mean = train.mean([0], keepdim: true);
            var sd = train.std(0, keepdim: true) + 1e-6;
            (tr, va, mi) = ((train - mean) / sd, (val - mean) / sd, mirrored is null ? null : (mirrored - mean) / sd);
        }

        var trY = trainY;
        if (mi is not null && h.Flip == FlipUse.Concat)
        {
            (tr, trY) = (cat([tr, mi], 0), cat([trainY, trainY], 0));
        }
        else if (mi is not null && h.Flip == FlipUse.Mean)
        {
            tr = (tr + mi) / 2;
        }

        var generator = new Generator((ulong)seed);
        var features = tr.shape[1];
        var linear = nn.Linear(features, classes);
        using (no_grad())
        {
            var bound = 1 / Math.Sqrt(features);
            linear.weight!.copy_((rand(linear.weight.shape, generator: generator) * 2 * bound) - bound);
            linear.bias!.copy_((rand(linear.bias!.shape, generator: generator) * 2 * bound) - bound);
        }

        nn.Module<Tensor, Tensor> model = h.Norm switch
        {
            Norm.BatchNorm or Norm.AffineBatchNorm => nn.Sequential(nn.BatchNorm1d(features, affine: h.Norm == Norm.AffineBatchNorm), linear),
            _ => nn.Sequential(nn.Dropout(h.Dropout), linear),
        };
        model.train();
        manual_seed(seed); // dropout
        var optimizer = optim.AdamW(model.parameters(), h.Lr, weight_decay: h.Wd);
        var n = tr.shape[0];
        var views = mi is not null && h.Flip == FlipUse.Alternate ? new[] { tr, mi } : [tr];
        for (var epoch = 0; epoch < h.Epochs; epoch++)
        {
            var x = views[epoch % views.Length];
            var order = randperm(n, generator: generator);
            for (long s = 0; s < n; s += 32)
            {
                using var step = NewDisposeScope();
                var batch = order.narrow(0, s, Math.Min(32, n - s));
                optimizer.zero_grad();
                nn.functional.cross_entropy(model.forward(x.index_select(0, batch)), trY.index_select(0, batch), label_smoothing: h.Ls).backward();
                optimizer.step();
            }
        }

        model.eval();
        using var noGrad = no_grad();
        return model.forward(va).argmax(1).eq(valY).to(float32).mean().item<float>();
    }

    /// <summary>A head variant: feature normalisation and training settings.</summary>
    private sealed record Head(string Name)
    {
        public Norm Norm { get; init; } = Norm.None;

        public int Epochs { get; init; } = 6;

        public double Lr { get; init; } = 1e-3;

        public double Wd { get; init; }

        public double Ls { get; init; }

        public double Dropout { get; init; }

        public FlipUse Flip { get; init; }
    }

    /// <summary>How a head uses the mirrored training features.</summary>
    private enum FlipUse
    {
        None,
        Concat,
        Alternate,
        Mean,
    }
}
