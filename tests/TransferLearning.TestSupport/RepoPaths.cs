namespace TransferLearning.TestSupport;

/// <summary>Paths in the repository. Tests use only files committed in it; data outside it is for benchmarks only.</summary>
public static class RepoPaths
{
    /// <summary>The folder holding TransferLearning.sln, found by walking up from the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>The tf_flowers photos shipped with the Flowers sample (<c>samples/Flowers/data</c>, CC BY 2.0, committed).</summary>
    public static string SamplePhotos => Path.Combine(Root, "samples", "Flowers", "data");

    /// <summary>A file or folder under the test project's <c>TestData</c> (copied next to the test binaries).</summary>
    /// <param name="parts">Path below <c>TestData</c>.</param>
    public static string TestData(params string[] parts) => Path.Combine([AppContext.BaseDirectory, "TestData", .. parts]);

    private static string FindRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "TransferLearning.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("TransferLearning.sln not found above " + AppContext.BaseDirectory);
    }
}
