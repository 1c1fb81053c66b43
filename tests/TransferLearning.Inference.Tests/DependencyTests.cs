using System.Reflection;
using System.Text.Json;

namespace TransferLearning.Inference.Tests;

/// <summary>The inference package runs without TorchSharp or LibTorch.</summary>
public sealed class DependencyTests
{
    private static bool IsTorch(string name) =>
        name.Contains("torch", StringComparison.OrdinalIgnoreCase);

    [Fact]
    public void PackageDependencyClosure_HasNoTorchSharpOrLibTorch()
    {
        // What NuGet resolved for the project (and so what its package brings): every library, direct or transitive.
        var assets = Path.Combine(RepoPaths.Root, "src", "TransferLearning.Inference", "obj", "project.assets.json");
        using var json = JsonDocument.Parse(File.ReadAllText(assets));
        var libraries = json.RootElement.GetProperty("libraries").EnumerateObject().Select(p => p.Name).ToList();

        Assert.Contains(libraries, l => l.StartsWith("Microsoft.ML.OnnxRuntime/", StringComparison.Ordinal));
        Assert.Contains(libraries, l => l.StartsWith("TransferLearning.Datasets/", StringComparison.Ordinal));
        Assert.DoesNotContain(libraries, IsTorch);
        Assert.DoesNotContain(libraries, l => l.StartsWith("TransferLearning.Core/", StringComparison.Ordinal));
    }

    [Fact]
    public void Assemblies_ReferenceNoTorchSharp()
    {
        var inference = typeof(ImageClassifier).Assembly;
        var referenced = inference.GetReferencedAssemblies()
            .Concat(typeof(Datasets.InputSpec).Assembly.GetReferencedAssemblies())
            .Select(a => a.Name!)
            .ToList();

        Assert.Contains("Microsoft.ML.OnnxRuntime", referenced);
        Assert.Contains("TransferLearning.Datasets", referenced);
        Assert.DoesNotContain(referenced, IsTorch);
        Assert.DoesNotContain("TransferLearning.Core", referenced);
    }

    [Fact]
    public void TestProcess_RunsWithoutTorchSharpOrLibTorchFiles()
    {
        using (var classifier = ImageClassifier.Load(Fixtures.Flowers))
        {
            classifier.Predict(Fixtures.Picture);
        }

        var files = Directory.GetFiles(AppContext.BaseDirectory, "*", SearchOption.AllDirectories).Select(Path.GetFileName).ToList();
        Assert.Contains("Microsoft.ML.OnnxRuntime.dll", files);
        Assert.DoesNotContain(files, f => IsTorch(f!));
        Assert.DoesNotContain(AppDomain.CurrentDomain.GetAssemblies(), a => IsTorch(a.GetName().Name!));
        Assert.DoesNotContain(Assembly.GetExecutingAssembly().GetReferencedAssemblies(), a => a.Name == "TransferLearning.Core");
    }
}
