using System.Text.RegularExpressions;

namespace TransferLearning.Core.Tests.Docs;

/// <summary>
/// Every C# block of the READMEs (the repository's and the packages') is code that compiles in CI and shows its using
/// lines: it is a snippet of <c>samples/QuickStart</c> (built with the solution), marked there with
/// <c>// &lt;readme:NAME&gt;</c> … <c>// &lt;/readme:NAME&gt;</c>. A snippet may be split into several marked regions
/// (its using directives at the top of the file, its statements inside a method); they are joined in file order.
/// </summary>
public partial class ReadmeTests
{
    [GeneratedRegex(@"```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();

    [GeneratedRegex(@"^[ \t]*// <readme:(?<name>[a-z0-9-]+)>\n(?<code>.*?)^[ \t]*// </readme:\k<name>>\n", RegexOptions.Singleline | RegexOptions.Multiline)]
    private static partial Regex SnippetRegion();

    private static readonly string[] ReadmePaths =
    [
        "README.md",
        Path.Combine("src", "TransferLearning.Core", "README.md"),
        Path.Combine("src", "TransferLearning.Datasets", "README.md"),
    ];

    /// <summary>The sample programs whose <c>// &lt;readme:NAME&gt;</c> regions are the READMEs' C# blocks.</summary>
    private static readonly string[] SnippetSamples = ["QuickStart", "InferenceQuickStart"];

    /// <summary>
    /// The README's ONNX Runtime example, checked and run by <see cref="ReadmeExportTests"/> instead (it declares its
    /// file names in a line the compiled method takes as parameters).
    /// </summary>
    private const string CheckedElsewhere = "<!-- export -->\n";

    public static TheoryData<string> Readmes() => new(ReadmePaths);

    /// <summary>Snippets by name: their regions, each with its common indentation removed, joined in order.</summary>
    private static Dictionary<string, string> Snippets()
    {
        var snippets = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var file in SnippetSamples.SelectMany(sample => Directory.EnumerateFiles(Path.Combine(RepoPaths.Root, "samples", sample), "*.cs", SearchOption.AllDirectories))
                     .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                         && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
                     .Order(StringComparer.Ordinal))
        {
            var text = File.ReadAllText(file).ReplaceLineEndings("\n");
            foreach (Match region in SnippetRegion().Matches(text))
            {
                var name = region.Groups["name"].Value;
                snippets[name] = snippets.GetValueOrDefault(name, string.Empty) + Dedent(region.Groups["code"].Value);
            }
        }

        return snippets;
    }

    private static string Dedent(string code)
    {
        var lines = code.Split('\n');
        var indent = lines.Where(l => l.Trim().Length > 0).Select(l => l.Length - l.TrimStart().Length).DefaultIfEmpty(0).Min();
        return string.Join('\n', lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
    }

    [Theory]
    [MemberData(nameof(Readmes))]
    public void Readme_EveryCSharpBlock_IsACompiledSnippetWithItsUsings(string readme)
    {
        var text = File.ReadAllText(Path.Combine(RepoPaths.Root, readme)).ReplaceLineEndings("\n");
        var snippets = Snippets();
        var blocks = CSharpBlock().Matches(text)
            .Where(m => !text[..m.Index].EndsWith(CheckedElsewhere, StringComparison.Ordinal))
            .Select(m => m.Groups["code"].Value)
            .ToList();

        Assert.NotEmpty(blocks);
        foreach (var block in blocks)
        {
            Assert.True(
                snippets.ContainsValue(block),
                $"{readme}: this C# block is not a snippet of samples/QuickStart or samples/InferenceQuickStart (mark the compiled code with // <readme:NAME> … // </readme:NAME>):\n{block}");
            Assert.StartsWith("using ", block, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void Snippets_EachStartsWithItsUsingsAndAppearsInAReadme()
    {
        var readmes = string.Concat(ReadmePaths.Select(r => File.ReadAllText(Path.Combine(RepoPaths.Root, r)).ReplaceLineEndings("\n")));

        foreach (var (name, code) in Snippets())
        {
            Assert.StartsWith("using ", code, StringComparison.Ordinal);
            Assert.True(readmes.Contains($"```csharp\n{code}```", StringComparison.Ordinal), $"snippet '{name}' appears in no README:\n{code}");
        }
    }
}
