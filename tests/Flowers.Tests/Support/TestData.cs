namespace Flowers.Tests.Support;

/// <summary>Inputs for CLI runs that train in milliseconds.</summary>
internal static class TestData
{
    /// <summary>A tiny Keras model (8×8 input, TF.js layers format) used as the backbone.</summary>
    public static string TinyBackbone => Path.Combine(AppContext.BaseDirectory, "TestData", "tfjs", "nested", "model.json");

    /// <summary>The arguments of a quick training run: two generated classes, the tiny backbone, one epoch unless <paramref name="more"/> says otherwise.</summary>
    public static string[] Train(string data, string output, params string[] more) =>
        ["train", "--data", data, "--model", TinyBackbone, "--out", output, .. more.Contains("--epochs") ? [] : (string[])["--epochs", "1"], .. more];
}
