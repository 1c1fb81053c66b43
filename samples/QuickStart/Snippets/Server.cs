// <readme:server>
using TransferLearning.Models;
using TransferLearning.Native;

// </readme:server>
namespace QuickStart.Snippets;

/// <summary>README, "Servers": one LibTorch thread per prediction, set before the first model is loaded.</summary>
internal static class Server
{
    public static void Run(Stream upload)
    {
        // <readme:server>
        TorchThreads.IntraOp = 1;                            // at start-up, before loading: each request on one core
        using var model = TrainedModel.Load("flowers.tlmodel");
        var prediction = model.Predict(upload);              // from any number of request threads at once
        // </readme:server>
        Console.WriteLine(prediction.Label);
    }
}
