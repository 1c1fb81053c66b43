namespace TransferLearning.Core.Tests;

/// <summary>Paths in the repository and in the read-only <c>../shared</c> folder beside it.</summary>
internal static class RepoPaths
{
    /// <summary>The folder holding TransferLearning.sln, found by walking up from the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>../shared/data/flowers (may not exist on a developer machine without it).</summary>
    public static string Flowers => Path.Combine(Root, "..", "shared", "data", "flowers");

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
