namespace TransferLearning.Hub;

/// <summary>Finds the ONNX files of ML.NET's offline ResNet18 featurizer (NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18).</summary>
internal static class OfflineModels
{
    internal const string PackageId = "microsoft.ml.dnnimagefeaturizer.resnet18";
    internal const string PackageVersion = "0.23.1";
    internal const string PreprocessRelative = "ResNetPrepOnnx/ResNetPreprocess.onnx";
    internal const string ResNet18Relative = "ResNet18Onnx/ResNet18.onnx";

    /// <summary>Returns (preprocess, resnet18) paths or throws with what to do.</summary>
    public static (string Preprocess, string ResNet18) LocateResNet18()
    {
        var candidates = new List<string> { Path.Combine(AppContext.BaseDirectory, "DnnImageModels") };
        var nugetRoot = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (string.IsNullOrEmpty(nugetRoot))
        {
            nugetRoot = Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        }

        candidates.Add(Path.Combine(nugetRoot, PackageId, PackageVersion, "tools", "DnnImageModels"));
        foreach (var dir in candidates)
        {
            var prep = Path.Combine(dir, PreprocessRelative);
            var net = Path.Combine(dir, ResNet18Relative);
            if (File.Exists(prep) && File.Exists(net))
            {
                return (prep, net);
            }
        }

        throw new FileNotFoundException(
            "The offline 'resnet18' backbone needs the ONNX files of the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18 " +
            $"{PackageVersion} (DnnImageModels/{ResNet18Relative} and DnnImageModels/{PreprocessRelative}). Looked in: " +
            string.Join("; ", candidates) + ". Add <PackageReference Include=\"Microsoft.ML.DnnImageFeaturizer.ResNet18\" Version=\"" +
            PackageVersion + "\" /> to your application (its build props copy DnnImageModels/ to the output folder).");
    }
}
