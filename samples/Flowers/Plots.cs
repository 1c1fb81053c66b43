using ScottPlot;
using TransferLearning.Training;

namespace Flowers;

/// <summary>PNG charts written next to the model file.</summary>
internal static class Plots
{
    /// <summary>Loss and accuracy per epoch, training vs validation, side by side; a line marks where fine-tuning began.</summary>
    public static void TrainingCurves(History history, int frozenEpochs, string path)
    {
        var epochs = history.Epochs.Select(e => (double)e.Epoch).ToArray();
        var multiplot = new Multiplot();
        multiplot.AddPlots(2);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Columns();
        Curves(multiplot.GetPlot(0), "Loss", epochs, history[History.Loss], history[History.ValLoss], frozenEpochs, history.Count);
        Curves(multiplot.GetPlot(1), "Accuracy", epochs, history[History.Accuracy], history[History.ValAccuracy], frozenEpochs, history.Count);
        OutputFile.Write(path, temp => multiplot.SavePng(temp, 1200, 480));
    }

    /// <summary>A heatmap of the confusion matrix with the count in every cell (rows: true class, columns: predicted).</summary>
    public static void ConfusionMatrix(IReadOnlyList<string> classes, int[,] matrix, string path)
    {
        var n = classes.Count;
        var values = new double[n, n];
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                values[i, j] = matrix[i, j];
            }
        }

        var plot = new Plot();
        var heatmap = plot.Add.Heatmap(values);
        heatmap.Colormap = new ScottPlot.Colormaps.Viridis();

        // Cell (row i, column j) is centred on x = j, y = n - 1 - i (row 0 drawn at the top).
        var max = values.Cast<double>().DefaultIfEmpty(0).Max();
        for (var i = 0; i < n; i++)
        {
            for (var j = 0; j < n; j++)
            {
                var text = plot.Add.Text(matrix[i, j].ToString(System.Globalization.CultureInfo.InvariantCulture), j, n - 1 - i);
                text.LabelFontSize = 16;
                text.LabelBold = true;
                text.LabelFontColor = values[i, j] > max * 0.6 ? Colors.Black : Colors.White;
                text.LabelAlignment = Alignment.MiddleCenter;
            }
        }

        var positions = Enumerable.Range(0, n).Select(i => (double)i).ToArray();
        plot.Axes.Bottom.SetTicks(positions, [.. classes]);
        plot.Axes.Left.SetTicks(positions, [.. classes.Reverse()]);
        plot.XLabel("predicted");
        plot.YLabel("true");
        plot.Title("Confusion matrix");
        plot.Add.ColorBar(heatmap);
        plot.Axes.SetLimits(-0.5, n - 0.5, -0.5, n - 0.5);
        OutputFile.Write(path, temp => plot.SavePng(temp, 640 + (40 * n), 560 + (30 * n)));
    }

    private static void Curves(Plot plot, string title, double[] epochs, IReadOnlyList<double> train, IReadOnlyList<double> validation, int frozenEpochs, int totalEpochs)
    {
        var t = plot.Add.Scatter(epochs, train.ToArray());
        t.LegendText = "train";
        t.LineWidth = 2;
        t.MarkerSize = 6;
        if (validation.Any(v => !double.IsNaN(v)))
        {
            var v = plot.Add.Scatter(epochs, validation.ToArray());
            v.LegendText = "validation";
            v.LineWidth = 2;
            v.MarkerSize = 6;
        }

        if (frozenEpochs < totalEpochs)
        {
            var line = plot.Add.VerticalLine(frozenEpochs + 0.5);
            line.LinePattern = LinePattern.Dashed;
            line.Text = "fine-tuning";
            line.Color = Colors.Gray;
        }

        plot.Title(title);
        plot.XLabel("epoch");
        plot.YLabel(title.ToLowerInvariant());
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericAutomatic { IntegerTicksOnly = true };
        plot.ShowLegend(title == "Loss" ? Alignment.UpperRight : Alignment.LowerRight);
    }
}
