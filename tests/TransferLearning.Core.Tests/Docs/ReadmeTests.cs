using System.Text.RegularExpressions;

namespace TransferLearning.Core.Tests.Docs;

public partial class ReadmeTests
{
    [GeneratedRegex(@"<!-- quickstart -->\s*```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex ReadmeBlock();

    [GeneratedRegex(@"// <quickstart>\n(?<code>.*?)// </quickstart>", RegexOptions.Singleline)]
    private static partial Regex SnippetBlock();

    [Fact]
    public void QuickStart_ReadmeBlock_IsTheCompiledSnippet()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md")).ReplaceLineEndings("\n");
        var snippet = File.ReadAllText(Path.Combine(RepoPaths.Root, "samples", "QuickStart", "Program.cs")).ReplaceLineEndings("\n");

        var inReadme = ReadmeBlock().Match(readme);
        var inSnippet = SnippetBlock().Match(snippet);

        Assert.True(inReadme.Success, "README.md needs a ```csharp block right after <!-- quickstart -->");
        Assert.True(inSnippet.Success, "samples/QuickStart/Program.cs needs a // <quickstart> region");
        Assert.Equal(inSnippet.Groups["code"].Value, inReadme.Groups["code"].Value);
    }
}
