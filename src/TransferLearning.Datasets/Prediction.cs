namespace TransferLearning.Datasets;

/// <summary>A class and its predicted probability.</summary>
/// <param name="Label">Class name.</param>
/// <param name="Index">Class index in the class list.</param>
/// <param name="Probability">Softmax probability.</param>
public sealed record ClassProbability(string Label, int Index, float Probability);

/// <summary>What the model says about one image.</summary>
/// <param name="Label">The most probable class.</param>
/// <param name="Index">Its index in the class list.</param>
/// <param name="Probability">Its probability.</param>
/// <param name="Top">The <c>topK</c> most probable classes, most probable first.</param>
/// <param name="Probabilities">The probability of every class, in class order.</param>
/// <param name="Source">The file the image came from, when it came from a file.</param>
public sealed record Prediction(
    string Label,
    int Index,
    float Probability,
    IReadOnlyList<ClassProbability> Top,
    IReadOnlyList<float> Probabilities,
    string? Source = null);
