using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Models;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Core.Tests;

/// <summary>
/// The test assembly is also a small program (the test host never calls it), so tests can run library code in a child
/// process and send it signals: <c>dotnet TransferLearning.Core.Tests.dll save-loop DIR</c> saves a 64 MB model to
/// DIR/m.tlmodel over and over, printing "saving N" before each save, until it is stopped. It installs no signal
/// handler: SIGTERM gets .NET's default handling, as in any application using the library.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args is not ["save-loop", var directory])
        {
            Console.Error.WriteLine("usage: TransferLearning.Core.Tests save-loop DIR");
            return 2;
        }

        var module = nn.Sequential(("pool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()), ("wide", nn.Linear(3, 4096)), ("big", nn.Linear(4096, 4096)));
        var backbone = new Backbone("test:big", module, 4096, new InputSpec(32, 32));
        var head = HeadFactory.Create(4096, 2, new HeadOptions());
        using var model = new TrainedModel(backbone, head, ["a", "b"], backbone.InputSpec, new HeadOptions(), new History(), CPU);
        var path = Path.Combine(directory, "m.tlmodel");
        for (var i = 0; ; i++)
        {
            Console.WriteLine($"saving {i}");
            model.Save(path);
        }
    }
}
