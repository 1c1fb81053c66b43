using System.CommandLine;

namespace Flowers;

/// <summary>The command surface: no arguments (default run), train, evaluate, predict.</summary>
internal static class Cli
{
    public static RootCommand Build()
    {
        var root = new RootCommand(
            "Flowers: image transfer learning from the command line. With no arguments, trains a flower classifier on the " +
            "small photo set shipped with the sample (offline ResNet18, frozen, 6 epochs).");
        root.SetAction((_, ct) => TrainCommand.RunAsync(TrainSettings.Default(), ct));

        var data = new Option<string>("--data") { Description = "Folder with one sub-folder of images per class.", Required = true };
        var model = new Option<string>("--model") { Description = "Backbone: resnet18 (offline), an .onnx/.pth/model.json path or an http(s) URL.", DefaultValueFactory = _ => "resnet18" };
        var epochs = new Option<int>("--epochs") { Description = "Epochs with the backbone frozen.", DefaultValueFactory = _ => 6 };
        var fineTune = new Option<int>("--fine-tune-epochs") { Description = "Further epochs with the whole backbone trainable (learning rate 1e-5).", DefaultValueFactory = _ => 0 };
        var validationSplit = new Option<double>("--validation-split") { Description = "Share of each class held out for validation.", DefaultValueFactory = _ => 0.3 };
        var seed = new Option<int>("--seed") { Description = "Seed of the split, initialisation and shuffling.", DefaultValueFactory = _ => 42 };
        var batchSize = new Option<int>("--batch-size") { Description = "Images per batch.", DefaultValueFactory = _ => 32 };
        var output = new Option<string>("--out") { Description = "Where to save the model (plots are written next to it).", DefaultValueFactory = _ => TrainSettings.DefaultModelPath };
        var json = new Option<string?>("--json") { Description = "Also write a machine-readable summary to this file." };

        var train = new Command("train", "Train a classifier on a folder of class folders.")
        {
            data, model, epochs, fineTune, validationSplit, seed, batchSize, output, json,
        };
        train.SetAction((r, ct) => TrainCommand.RunAsync(
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
                DefaultData: false),
            ct));

        var savedModel = new Option<string>("--model") { Description = "A model file saved by train.", Required = true };
        var evalData = new Option<string>("--data") { Description = "Folder with one sub-folder of images per class.", Required = true };
        var evalJson = new Option<string?>("--json") { Description = "Also write a machine-readable summary to this file." };
        var evaluate = new Command("evaluate", "Measure a saved model on a folder of class folders.") { savedModel, evalData, evalJson };
        evaluate.SetAction((r, ct) => EvaluateCommand.RunAsync(r.GetRequiredValue(savedModel), r.GetRequiredValue(evalData), r.GetValue(evalJson), ct));

        var predictModel = new Option<string>("--model") { Description = "A model file saved by train.", Required = true };
        var images = new Argument<string[]>("IMAGE") { Description = "Image files to classify.", Arity = ArgumentArity.OneOrMore };
        var predict = new Command("predict", "Classify images with a saved model.") { predictModel, images };
        predict.SetAction((r, ct) => PredictCommand.RunAsync(r.GetRequiredValue(predictModel), r.GetRequiredValue(images), ct));

        root.Subcommands.Add(train);
        root.Subcommands.Add(evaluate);
        root.Subcommands.Add(predict);
        root.Subcommands.Add(ExportCommand.Create());
        return root;
    }
}
