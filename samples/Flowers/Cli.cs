using System.CommandLine;
using TransferLearning.Training;

namespace Flowers;

/// <summary>The command surface: no arguments (default run), train, evaluate, predict.</summary>
internal static class Cli
{
    public static RootCommand Build(Session session)
    {
        var root = new RootCommand(
            "Flowers: image transfer learning from the command line. With no arguments, trains a flower classifier on the " +
            $"photos shipped with the sample (offline ResNet18, frozen, {TrainSettings.DefaultEpochs} epochs).");
        root.SetAction((_, _) => TrainCommand.RunAsync(TrainSettings.Default(), session));

        var data = new Option<string>("--data") { Description = "Folder with one sub-folder of images per class.", Required = true };
        var model = new Option<string>("--model") { Description = "Backbone: resnet18 (offline), an .onnx/.pth/model.json path or an http(s) URL.", DefaultValueFactory = _ => "resnet18" };
        var architecture = new Option<string?>("--architecture")
        {
            Description = "Architecture of a PyTorch .pth/.pt/.safetensors backbone whose file name does not say it (resnet18, resnet50, mobilenet_v2, …).",
        };
        var epochs = new Option<int>("--epochs") { Description = $"Epochs with the backbone frozen (1–{TrainSettings.MaxEpochs}).", DefaultValueFactory = _ => TrainSettings.DefaultEpochs };
        var fineTune = new Option<int>("--fine-tune-epochs")
        {
            Description = "Further epochs with the whole backbone trainable, by the library's fine-tuning recipe (AdamW, one-cycle schedule, " +
                $"lower rates for early blocks, label smoothing, augmentation; 0–{TrainSettings.MaxEpochs}). Costs a backbone forward and backward pass per image and epoch.",
            DefaultValueFactory = _ => 0,
        };
        var augment = new Option<bool?>("--augment")
        {
            Description = "Random resized crops, flips and brightness/contrast changes of the training images. Default: on for fine-tuning " +
                $"(without it the backbone memorises the training photos), off for the frozen head; on for the head means {TrainSettings.HeadViews} augmented " +
                "views of each training image featurized once and cached (that many more backbone passes). --augment false turns it off everywhere.",
        };
        var tta = new Option<bool>("--tta") { Description = "Also report validation accuracy with test-time augmentation (mean of each image and its mirror; one more backbone pass over the validation images)." };
        var int8 = new Option<bool>("--int8")
        {
            Description = "Run the frozen backbone in int8 (8-bit weights and activations, any backbone family): trades a little accuracy for speed " +
                "on compute-heavy networks (resnet18 on flowers: featurizing 3.9x faster, validation accuracy 0.9017 against 0.8987 in float); thin MobileNets gain " +
                "little or nothing. Calibration on 32 training images takes seconds to a minute. Fine-tuning (--fine-tune-epochs) trains in float.",
        };
        var bf16 = new Option<bool>("--bf16")
        {
            Description = "Run the backbone in bfloat16, where the CPU has native bf16 kernels (AVX-512 BF16 or AMX; elsewhere train stops with a message " +
                "naming the missing feature): the frozen featurizing and, with --fine-tune-epochs, the fine-tuning steps (float master weights; the saved " +
                "model predicts in float). Trades rounding to 8 significant bits for speed: resnet18's fine-tuning recipe on flowers ran 1.73x faster at " +
                "validation accuracy 0.9448 against 0.9458 in float; the small Teachable Machine MobileNetV2 gained 1.1-1.2x. Not with --int8.",
        };
        var multiStage = new Option<bool>("--multi-stage")
        {
            Description = "Give the head average- and max-pooled features of the backbone's last two stages (1,536 for resnet18 instead of 512), " +
                "standardized over the training images. ONNX backbones only (resnet18 included). Costs no extra backbone pass; on flowers it " +
                "raised the frozen head's validation accuracy by about 0.01.",
        };
        var mirror = new Option<bool>("--mirror")
        {
            Description = "Average each image's features with its left-right mirror's, in training and in the saved model. ONNX backbones only " +
                "(resnet18 included). Every image runs through the backbone twice, so featurizing and prediction take about twice as long " +
                "(with --int8 still less than one float pass); on flowers, with --multi-stage, it raised the frozen head's validation accuracy by about 0.006.",
        };
        var centerCrop = new Option<bool>("--center-crop")
        {
            Description = "Resize each image keeping its aspect ratio and take the square centre, instead of stretching it to the square " +
                "(the tutorial's resize). Saved with the model, so prediction resizes the same way. On flowers it raised the frozen head's " +
                "validation accuracy by about 0.007; with --crop-min 0.6 it is the fine-tuning recipe that took resnet18 to 0.95 (README).",
        };
        var cropMin = new Option<double?>("--crop-min")
        {
            Description = "Smallest share of an image's area that augmentation's random crops keep (above 0, at most 1; default " +
                $"{Augmentation.Standard.CropScaleMin.ToString(System.Globalization.CultureInfo.InvariantCulture)}). Larger keeps more of each photo.",
        };
        var validationSplit = new Option<double>("--validation-split") { Description = "Share of each class held out for validation (between 0 and 1).", DefaultValueFactory = _ => 0.3 };
        var seed = new Option<int>("--seed") { Description = "Seed of the split, initialisation and shuffling.", DefaultValueFactory = _ => 42 };
        var batchSize = new Option<int>("--batch-size") { Description = $"Images per batch (1–{TrainSettings.MaxBatchSize}).", DefaultValueFactory = _ => 32 };
        var output = new Option<string>("--out") { Description = "Where to save the model (plots are written next to it).", DefaultValueFactory = _ => TrainSettings.DefaultModelPath };
        var json = new Option<string?>("--json") { Description = "Also write a machine-readable summary to this file." };

        var train = new Command("train", "Train a classifier on a folder of class folders.")
        {
            data, model, architecture, epochs, fineTune, augment, tta, int8, bf16, multiStage, mirror, centerCrop, cropMin, validationSplit, seed, batchSize, output, json,
        };
        train.SetAction((r, _) => TrainCommand.RunAsync(
            new TrainSettings(
                r.GetRequiredValue(data),
                r.GetValue(model)!,
                r.GetValue(epochs),
                r.GetValue(fineTune),
                r.GetValue(validationSplit),
                r.GetValue(seed),
                r.GetValue(batchSize),
                r.GetValue(output)!,
                r.GetValue(json),
                DefaultData: false)
            {
                Architecture = r.GetValue(architecture),
                Augment = r.GetValue(augment),
                Tta = r.GetValue(tta),
                Int8 = r.GetValue(int8),
                Bf16 = r.GetValue(bf16),
                MultiStage = r.GetValue(multiStage),
                Mirror = r.GetValue(mirror),
                CenterCrop = r.GetValue(centerCrop),
                CropMin = r.GetValue(cropMin),
            },
            session));

        var savedModel = new Option<string>("--model") { Description = "A model file saved by train.", Required = true };
        var evalData = new Option<string>("--data") { Description = "Folder with one sub-folder of images per class.", Required = true };
        var evalJson = new Option<string?>("--json") { Description = "Also write a machine-readable summary to this file." };
        var evalTta = new Option<bool>("--tta") { Description = "Also report accuracy with test-time augmentation (mean of each image and its mirror; twice the backbone work)." };
        var evaluate = new Command("evaluate", "Measure a saved model on a folder of class folders.") { savedModel, evalData, evalJson, evalTta };
        evaluate.SetAction((r, _) => EvaluateCommand.RunAsync(r.GetRequiredValue(savedModel), r.GetRequiredValue(evalData), r.GetValue(evalJson), session, r.GetValue(evalTta)));

        var predictModel = new Option<string>("--model") { Description = "A model file saved by train.", Required = true };
        var images = new Argument<string[]>("IMAGE") { Description = "Image files to classify.", Arity = ArgumentArity.OneOrMore };
        var predict = new Command("predict", "Classify images with a saved model.") { predictModel, images };
        predict.SetAction((r, _) => PredictCommand.RunAsync(r.GetRequiredValue(predictModel), r.GetRequiredValue(images), session));

        root.Subcommands.Add(train);
        root.Subcommands.Add(evaluate);
        root.Subcommands.Add(predict);
        root.Subcommands.Add(ExportCommand.Create());
        return root;
    }
}
