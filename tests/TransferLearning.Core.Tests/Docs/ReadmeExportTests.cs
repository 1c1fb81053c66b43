using System.Text.RegularExpressions;
using TransferLearning.Backbones.Tfjs;
using TransferLearning.Core.Tests.Export;
using TransferLearning.Core.Tests.Tfjs;

namespace TransferLearning.Core.Tests.Docs;

public partial class ReadmeExportTests
{
    /// <summary>The README block declares the three paths the compiled snippet takes as parameters.</summary>
    private const string Declarations = "string modelFile = \"flowers.tlmodel\", onnxFile = \"flowers.onnx\", photo = \"photo.jpg\";\n";

    [GeneratedRegex(@"<!-- export -->\s*```csharp\n(?<code>.*?)```", RegexOptions.Singleline)]
    private static partial Regex ReadmeBlock();

    [GeneratedRegex(@"// <export-usings>\n(?<code>.*?)// </export-usings>", RegexOptions.Singleline)]
    private static partial Regex UsingsRegion();

    [GeneratedRegex(@"\n(?<indent> *)// <export>\n(?<code>.*?)\n *// </export>", RegexOptions.Singleline)]
    private static partial Regex BodyRegion();

    [Fact]
    public void ExportOnnx_ReadmeBlock_IsTheCompiledSnippet()
    {
        var readme = File.ReadAllText(Path.Combine(RepoPaths.Root, "README.md")).ReplaceLineEndings("\n");
        var source = File.ReadAllText(Path.Combine(RepoPaths.Root, "tests", "TransferLearning.Core.Tests", "Docs", "ExportSnippet.cs")).ReplaceLineEndings("\n");
        var block = ReadmeBlock().Match(readme);
        var usings = UsingsRegion().Match(source);
        var body = BodyRegion().Match(source);
        Assert.True(block.Success, "README.md needs a ```csharp block right after <!-- export -->");
        Assert.True(usings.Success && body.Success, "ExportSnippet.cs needs // <export-usings> and // <export> regions");
        var indent = body.Groups["indent"].Value.Length;
        var dedented = string.Join('\n', body.Groups["code"].Value.Split('\n').Select(l => l.Length >= indent ? l[indent..] : l.TrimStart()));
        Assert.Equal(usings.Groups["code"].Value + "\n" + Declarations + "\n" + dedented + "\n", block.Groups["code"].Value);
    }

    [Fact]
    [Trait("Category", "RealData")]
    public void ExportSnippet_SavedModel_ExportsAndClassifiesAsTheModelDoes()
    {
        using var dir = new TempDir();
        var photo = ExportTestSupport.Photos(1)[2];
        string expected;
        using (var model = ExportTestSupport.Model(TfjsModel.Load(TfjsTestData.ModelJson("bn_act"))))
        {
            ExportTestSupport.Scale(model, 4);
            model.Save(dir.Combine("flowers.tlmodel"));
            expected = model.Predict(photo).Label;
        }

        Assert.Equal(expected, ExportSnippet.Run(dir.Combine("flowers.tlmodel"), dir.Combine("flowers.onnx"), photo));
    }
}
