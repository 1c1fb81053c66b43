using System.Text.Json.Nodes;
using Flowers.Tests.Support;

namespace Flowers.Tests;

/// <summary>train --fine-tune-epochs/--augment/--tta/--int8/--bf16/--multi-stage/--mirror/--center-crop/--crop-min and evaluate --tta: what they run and what the JSON says.</summary>
public sealed class RecipeOptionTests : IDisposable
{
    private readonly GeneratedImages _images = new();
    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _images.Dispose();
        _dir.Dispose();
    }

    private string Model => _dir.Combine("m.tlmodel");

    private string Json => _dir.Combine("m.json");

    private async Task<JsonNode> TrainAsync(params string[] more)
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, [.. more, "--json", Json]));
        Assert.True(run.ExitCode == 0, run.Error + run.Output);
        return JsonNode.Parse(File.ReadAllText(Json))!;
    }

    [Fact]
    public async Task Train_FineTuneEpochs_UsesTheRecipeWithAugmentationByDefault()
    {
        var summary = await TrainAsync("--epochs", "2", "--fine-tune-epochs", "2");

        Assert.True((bool)summary["augment"]!["fine_tune"]!);
        Assert.False((bool)summary["augment"]!["frozen"]!);
        var history = summary["history"]!.AsArray();
        Assert.Equal(["frozen", "frozen", "fine-tune", "fine-tune"], history.Select(e => (string)e!["stage"]!));

        // The recipe's one-cycle schedule: the fine-tuning epochs' (mean) rates differ and stay below its peak.
        var rates = history.Skip(2).Select(e => (double)e!["learning_rate"]!).ToList();
        Assert.NotEqual(rates[0], rates[1]);
        Assert.All(rates, r => Assert.InRange(r, 1e-7, TransferLearning.Training.FineTuneRecipe.LearningRate));
        Assert.Null(summary["val_accuracy_tta"]);
        Assert.False((bool)summary["tta"]!);
        Assert.False((bool)summary["int8"]!);
        Assert.False((bool)summary["bf16"]!);
    }

    [Fact]
    public async Task Train_Bf16WithFineTuning_TrainsInBf16WhereTheCpuHasItElseNamesTheMissingFeature()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--bf16", "--fine-tune-epochs", "1", "--json", Json));

        if (run.ExitCode == 0)
        {
            var summary = JsonNode.Parse(File.ReadAllText(Json))!;
            Assert.True((bool)summary["bf16"]!);
            Assert.Equal(["frozen", "fine-tune"], summary["history"]!.AsArray().Select(e => (string)e!["stage"]!));
            Assert.Contains("whole backbone trainable (in bf16)", run.Output, StringComparison.Ordinal);
            return;
        }

        // A CPU without native bf16 kernels: one line naming the feature, nothing saved.
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("flowers: error: Bf16Backbone cannot speed up this machine: ", run.Error, StringComparison.Ordinal);
        Assert.Contains("avx512_bf16", run.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(Model));
    }

    [Fact]
    public async Task Train_Int8AndBf16_FailsSayingChooseOneAndSavesNothing()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--int8", "--bf16"));

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("flowers: error: Int8Backbone and Bf16Backbone both ask for a faster backbone; choose one.", run.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(Model));
    }

    [Fact]
    public async Task Train_AugmentFalse_FineTunesWithoutAugmentation()
    {
        var summary = await TrainAsync("--fine-tune-epochs", "1", "--augment", "false");

        Assert.False((bool)summary["augment"]!["fine_tune"]!);
        Assert.False((bool)summary["augment"]!["frozen"]!);
    }

    [Fact]
    public async Task Train_AugmentTrue_CachesAugmentedViewsForTheHead()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--augment", "true", "--json", Json));

        Assert.Equal(0, run.ExitCode);
        Assert.Contains($"Augmentation: {TrainSettings.HeadViews} augmented views of each training image, featurized once and cached.", run.Output, StringComparison.Ordinal);
        Assert.True((bool)JsonNode.Parse(File.ReadAllText(Json))!["augment"]!["frozen"]!);
    }

    [Fact]
    public async Task Train_Tta_ReportsValidationAccuracyWithTestTimeAugmentation()
    {
        var summary = await TrainAsync("--tta");

        Assert.True((bool)summary["tta"]!);
        Assert.InRange((double)summary["val_accuracy_tta"]!, 0, 1);
        Assert.InRange((double)summary["val_accuracy"]!, 0, 1);
    }

    [Fact]
    public async Task Evaluate_Tta_AddsAccuracyTtaOnlyWhenAsked()
    {
        await TrainAsync();
        var plain = _dir.Combine("plain.json");
        var withTta = _dir.Combine("tta.json");

        var first = await FlowersCli.RunAsync("evaluate", "--model", Model, "--data", _images.Root, "--json", plain);
        var second = await FlowersCli.RunAsync("evaluate", "--model", Model, "--data", _images.Root, "--json", withTta, "--tta");

        Assert.Equal((0, 0), (first.ExitCode, second.ExitCode));
        Assert.Null(JsonNode.Parse(File.ReadAllText(plain))!["accuracy_tta"]);
        var summary = JsonNode.Parse(File.ReadAllText(withTta))!;
        Assert.InRange((double)summary["accuracy_tta"]!, 0, 1);
        Assert.Contains("Accuracy with test-time augmentation (image and mirror): ", second.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Train_MultiStageOnResNet18_HeadGets1536FeaturesAndJsonSaysSo()
    {
        var run = await FlowersCli.RunAsync("train", "--data", _images.Root, "--model", "resnet18", "--out", Model, "--epochs", "1", "--multi-stage", "--json", Json);

        Assert.True(run.ExitCode == 0, run.Error + run.Output);
        Assert.Contains("(1536 features)", run.Output, StringComparison.Ordinal);
        var summary = JsonNode.Parse(File.ReadAllText(Json))!;
        Assert.True((bool)summary["multi_stage"]!);
        Assert.InRange((double)summary["val_accuracy"]!, 0, 1);
    }

    [Fact]
    public async Task Train_MultiStageOnTfjsBackbone_FailsSayingWhichBackbonesHaveIt()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--multi-stage"));

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("BackboneLoadOptions.Features = MultiStage works with ONNX backbones (and the offline 'resnet18')", run.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(Model));
    }

    [Fact]
    public async Task Train_MirrorOnResNet18_SavedModelAveragesMirrorAndJsonSaysSo()
    {
        var run = await FlowersCli.RunAsync("train", "--data", _images.Root, "--model", "resnet18", "--out", Model, "--epochs", "1", "--mirror", "--json", Json);

        Assert.True(run.ExitCode == 0, run.Error + run.Output);
        var summary = JsonNode.Parse(File.ReadAllText(Json))!;
        Assert.True((bool)summary["mirror"]!);
        Assert.False((bool)summary["multi_stage"]!);
        using var model = TransferLearning.Models.TrainedModel.Load(Model);
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var noGrad = TorchSharp.torch.no_grad();
        model.Backbone.SetTrainingMode(false);
        var images = TorchSharp.torch.rand([1, 3, 224, 224], generator: new TorchSharp.torch.Generator(3)) * 255;
        var difference = (model.Backbone.Forward(images) - model.Backbone.Forward(images.flip(3))).abs().max().item<float>();
        Assert.True(difference < 1e-3f, $"an image and its mirror differ by {difference} in the saved model's features");
    }

    [Fact]
    public async Task Train_MirrorOnTfjsBackbone_FailsSayingWhichBackbonesHaveIt()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--mirror"));

        Assert.Equal(1, run.ExitCode);
        Assert.Contains("BackboneLoadOptions.MirrorAveraged works with ONNX backbones (and the offline 'resnet18')", run.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(Model));
    }

    [Fact]
    public async Task Train_CenterCropAndCropMin_SavedModelCropsAndJsonSaysSo()
    {
        var summary = await TrainAsync("--fine-tune-epochs", "1", "--center-crop", "--crop-min", "0.6");

        Assert.True((bool)summary["center_crop"]!);
        Assert.Equal(0.6, (double)summary["crop_min"]!);
        Assert.True((bool)summary["augment"]!["fine_tune"]!);
        using var model = TransferLearning.Models.TrainedModel.Load(Model);
        Assert.Equal(TransferLearning.Datasets.ResizeMode.CenterCrop, model.InputSpec.ResizeMode);
    }

    [Fact]
    public async Task Train_Defaults_JsonSaysStretchedAndNoCrops()
    {
        var summary = await TrainAsync();

        Assert.False((bool)summary["center_crop"]!);
        Assert.Null(summary["crop_min"]);
        using var model = TransferLearning.Models.TrainedModel.Load(Model);
        Assert.Equal(TransferLearning.Datasets.ResizeMode.Stretch, model.InputSpec.ResizeMode);
    }

    [Fact]
    public async Task Train_CropMinWithoutAugmentation_FailsNamingTheOption()
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--crop-min", "0.6"));

        Assert.Equal(2, run.ExitCode);
        Assert.Contains("--crop-min shapes the random crops of augmentation, which this run does not use: add --fine-tune-epochs N (augmented by default) or --augment.",
            run.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(Model));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("1.5")]
    public async Task Train_CropMinOutOfRange_FailsSayingTheRange(string value)
    {
        var run = await FlowersCli.RunAsync(TestData.Train(_images.Root, Model, "--fine-tune-epochs", "1", "--crop-min", value));

        Assert.Equal(2, run.ExitCode);
        Assert.Contains($"--crop-min must be above 0 and at most 1 (got {value}).", run.Error, StringComparison.Ordinal);
        Assert.False(File.Exists(Model));
    }

    [Fact]
    public async Task TrainHelp_Int8Bf16AndAugment_SayWhatTheyTrade()
    {
        var run = await FlowersCli.RunAsync("train", "--help");

        Assert.Contains("--int8", run.Output, StringComparison.Ordinal);
        Assert.Contains("trades a little accuracy for speed", run.Output, StringComparison.Ordinal);
        Assert.Contains("--bf16", run.Output, StringComparison.Ordinal);
        Assert.Contains("Trades rounding to 8 significant bits for speed", run.Output, StringComparison.Ordinal);
        Assert.Contains("Default: on for fine-tuning", run.Output, StringComparison.Ordinal);
    }
}
