using System.Globalization;
using TransferLearning.Datasets;
using TransferLearning.Hub;

namespace TransferLearning.Backbones.TorchVision;

/// <summary>PyTorch state dicts of torchvision architectures (.pth, .pt, .safetensors); saved models keep the architecture name.</summary>
internal sealed class TorchVisionFormat : IBackboneFormat
{
    private TorchVisionFormat()
    {
    }

    public static TorchVisionFormat Instance { get; } = new();

    public string Name => "torchvision";

    public string Description => "a PyTorch state dict (.pth, .pt, .safetensors)";

    public bool Recognizes(string fileName, BackboneLoadOptions options)
    {
        var extension = Path.GetExtension(fileName).ToLowerInvariant();
        return extension is ".pth" or ".pt" or ".safetensors" || (extension == ".bin" && options.Architecture is not null);
    }

    public Task<Backbone> LoadAsync(BackboneFile file, BackboneLoadOptions options, CancellationToken cancellationToken) =>
        Task.FromResult(TorchVisionBackbones.Load(
            file.LocalPath, file.Source, options.Architecture ?? TorchVisionBackbones.InferArchitecture(file.FileName), options.InputSpec));

    public Backbone Rebuild(BackboneArchitecture architecture, string source, InputSpec inputSpec)
    {
        var arch = architecture.Setting("architecture");
        var width = double.Parse(architecture.Setting("width_mult"), CultureInfo.InvariantCulture);
        var featureSize = int.Parse(architecture.Setting("feature_size"), CultureInfo.InvariantCulture);
        var module = TorchVisionBackbones.Cut(TorchVisionBackbones.Create(arch, widthMult: width));
        module.Architecture = (arch, width);
        try
        {
            return new Backbone(source, module, featureSize, inputSpec);
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>What a saved model records: the architecture and its width.</summary>
    public static BackboneArchitecture Describe(string architecture, double widthMult, int featureSize) =>
        new(
            Instance.Name,
            new Dictionary<string, string>
            {
                ["architecture"] = architecture,
                ["width_mult"] = widthMult.ToString("R", CultureInfo.InvariantCulture),
                ["feature_size"] = featureSize.ToString(CultureInfo.InvariantCulture),
            },
            new Dictionary<string, byte[]>());
}
