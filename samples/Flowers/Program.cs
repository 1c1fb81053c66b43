// Flowers: train, evaluate and use an image classifier with TransferLearning, from the command line.
//   Flowers                                     train on the small flowers set shipped with the sample (offline)
//   Flowers train --data DIR [options]          train on your own folder of class folders
//   Flowers evaluate --model FILE --data DIR    measure a saved model on labelled images
//   Flowers predict --model FILE IMAGE...       classify images
using System.CommandLine;
using Flowers;

using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    // First Ctrl+C stops training cleanly within one batch; a second one kills the process.
    if (!cancel.IsCancellationRequested)
    {
        e.Cancel = true;
        cancel.Cancel();
    }
};

try
{
    var root = Cli.Build();
    var parsed = root.Parse(args);
    if (parsed.Errors.Count > 0)
    {
        return Failure.Usage(parsed.Errors[0].Message);
    }

    return await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }, cancel.Token);
}
catch (Exception e)
{
    return Failure.Report(e, cancel.IsCancellationRequested);
}
