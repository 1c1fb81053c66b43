// TEMPORARY: stand-ins for the hub API being written on the `hub` branch. Deleted at merge.
#pragma warning disable CS1591
using TransferLearning.Backbones;

namespace TransferLearning.Hub;

public sealed class BackboneLoadOptions
{
}

public static class ModelHub
{
    public static Backbone LoadBackbone(string source, BackboneLoadOptions? options = null) => throw new NotImplementedException(source);

    public static Task<Backbone> LoadBackboneAsync(string source, BackboneLoadOptions? options = null, IProgress<long>? progress = null, CancellationToken cancellationToken = default) =>
        throw new NotImplementedException(source);
}
