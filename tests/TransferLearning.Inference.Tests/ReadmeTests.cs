using System.Text.RegularExpressions;

namespace TransferLearning.Inference.Tests;

public sealed partial class ReadmeTests
{
    [GeneratedRegex(@"<!-- inference-quickstart -->\s*```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex ReadmeBlock();

    [GeneratedRegex(@"// <inference-quickstart>\n(?<code>.*?)// </inference-quickstart>", RegexOptions.Singleline)]
    private static partial Regex SnippetBlock();

    [Fact]
    public void InferenceQuickStart_ReadmeBlock_IsTheCompiledSnippet()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md")).ReplaceLineEndings("\n");
        var snippet = File.ReadAllText(Path.Combine(RepoPaths.Root, "samples", "InferenceQuickStart", "Program.cs")).ReplaceLineEndings("\n");

        var inReadme = ReadmeBlock().Match(readme);
        var inSnippet = SnippetBlock().Match(snippet);

        Assert.True(inReadme.Success, "README.md needs a ```csharp block right after <!-- inference-quickstart -->");
        Assert.True(inSnippet.Success, "samples/InferenceQuickStart/Program.cs needs a // <inference-quickstart> region");
        Assert.Equal(inSnippet.Groups["code"].Value, inReadme.Groups["code"].Value);
    }
}
