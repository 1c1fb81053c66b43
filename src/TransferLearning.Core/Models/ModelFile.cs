using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using TorchSharp;
using TransferLearning.Backbones;
using TransferLearning.Datasets;
using TransferLearning.Heads;
using TransferLearning.Hub;
using TransferLearning.Native;
using TransferLearning.Training;
using static TorchSharp.torch;

namespace TransferLearning.Models;

/// <summary>A model file cannot be read: truncated, tampered with, from a newer version, or not a model file.</summary>
public sealed class ModelFileException : Exception
{
    /// <summary>Creates the exception.</summary>
    public ModelFileException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">What is wrong and with which file.</param>
    public ModelFileException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and the underlying error.</summary>
    /// <param name="message">What is wrong and with which file.</param>
    /// <param name="innerException">The underlying error.</param>
    public ModelFileException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>
/// The model file: a zip archive holding <c>manifest.json</c> (format, classes, backbone source and architecture, input
/// spec, head shape, history and the SHA-256 of every other entry), <c>manifest.sha256</c> (the SHA-256 of manifest.json,
/// so an edit of the class names, input spec or head is detected like damaged weights), <c>backbone.bin</c> and
/// <c>head.bin</c> (TorchSharp weights) and <c>architecture/…</c> (what the backbone's format needs to rebuild the
/// network: an ONNX graph without weights, a model.json, or just settings).
/// </summary>
internal static class ModelFile
{
    internal const string Format = "transferlearning-model";

    /// <summary>
    /// Newest format read: 1 = float backbone rebuilt from its source; 2 adds int8 activation parameters; 3 is
    /// self-contained (the backbone's architecture is in the file, so loading needs neither the source nor the network)
    /// and requires <c>manifest.sha256</c>; 4 adds int8 activations in the full 8-bit range (a third number, the levels,
    /// 255, where a CPU with VNNI allowed it; a reader without VNNI moves them to 7 bits), int8 channel equalisation
    /// factors and the convolutions an int8 backbone keeps in float, and requires <c>manifest.sha256</c> too. Files are
    /// written as version 4 only when they need it (else 3, which the previous release reads). Older readers refuse
    /// newer versions. Every file written now carries <c>manifest.sha256</c>, which is checked whenever present; files of
    /// versions 1 and 2 written before it existed still load.
    /// </summary>
    internal const int Version = 4;

    /// <summary>What files without int8 levels, equalisation or float convolutions are written as.</summary>
    internal const int PlainVersion = 3;

    /// <summary>First version whose manifest must be covered by <see cref="ManifestHashEntry"/>.</summary>
    internal const int HashedManifestVersion = 3;
    internal const string ManifestEntry = "manifest.json";
    internal const string ManifestHashEntry = "manifest.sha256";
    private const string BackboneEntry = "backbone.bin";
    private const string HeadEntry = "head.bin";
    private const string ArchitecturePrefix = "architecture/";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    public static void Save(TrainedModel model, string path)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        var backbone = Serialize(model.Backbone.Module);
        var head = Serialize(model.Head);
        var int8Parameters = model.Backbone.Int8Parameters;
        var int8 = int8Parameters?.Activations.ToDictionary(
            kv => kv.Key,
            kv => kv.Value.Levels == Int8Kernels.SevenBit ? new[] { kv.Value.Scale, kv.Value.ZeroPoint } : [kv.Value.Scale, kv.Value.ZeroPoint, kv.Value.Levels],
            StringComparer.Ordinal);
        var needsVersion4 = int8?.Values.Any(v => v.Length > 2) == true || int8Parameters?.ChannelScales.Count > 0 || int8Parameters?.FloatConvs.Count > 0;
        var architecture = model.Backbone.Architecture;
        var architectureFiles = architecture?.Files.ToDictionary(kv => ArchitecturePrefix + kv.Key, kv => kv.Value, StringComparer.Ordinal) ?? [];
        var hashes = new Dictionary<string, string> { [BackboneEntry] = Hash(backbone), [HeadEntry] = Hash(head) };
        foreach (var (entry, bytes) in architectureFiles)
        {
            hashes[entry] = Hash(bytes);
        }

        var manifest = new Manifest
        {
            Format = Format,
            Version = needsVersion4 ? Version : PlainVersion,
            Classes = [.. model.Classes],
            Backbone = new BackboneInfo
            {
                Source = model.Backbone.Source,
                FeatureSize = model.Backbone.FeatureSize,
                InputSpec = SpecDto.From(model.Backbone.InputSpec),
                Int8 = int8,
                Int8ChannelScales = int8Parameters?.ChannelScales.Count > 0 ? int8Parameters.ChannelScales.ToDictionary(kv => kv.Key, kv => kv.Value, StringComparer.Ordinal) : null,
                Int8FloatConvs = int8Parameters?.FloatConvs.Count > 0 ? [.. int8Parameters.FloatConvs.Order(StringComparer.Ordinal)] : null,
                Architecture = architecture is null ? null : new ArchitectureDto { Format = architecture.Format, Settings = new(architecture.Settings) },
            },
            InputSpec = SpecDto.From(model.InputSpec),
            Head = new HeadDto { HiddenUnits = [.. model.HeadOptions.HiddenUnits], Dropout = model.HeadOptions.Dropout, Activation = model.HeadOptions.Activation },
            History = [.. model.History.Epochs],
            Sha256 = hashes,
        };
        var manifestBytes = JsonSerializer.SerializeToUtf8Bytes(manifest, Json);

        AtomicFile.Write(path, file =>
        {
            using var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true);
            Write(zip, ManifestEntry, manifestBytes, CompressionLevel.Optimal);
            Write(zip, ManifestHashEntry, Encoding.ASCII.GetBytes(Hash(manifestBytes)), CompressionLevel.NoCompression);
            Write(zip, BackboneEntry, backbone, CompressionLevel.NoCompression);
            Write(zip, HeadEntry, head, CompressionLevel.NoCompression);
            foreach (var (entry, bytes) in architectureFiles)
            {
                Write(zip, entry, bytes, CompressionLevel.Optimal);
            }
        });
    }

    public static TrainedModel Load(string path, ModelLoadOptions options)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        TorchNativeLoader.EnsureLoaded();
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Model file '{path}' does not exist.", path);
        }

        Manifest manifest;
        byte[] backboneWeights;
        byte[] headWeights;
        var architectureFiles = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        try
        {
            using var zip = ZipFile.OpenRead(path);
            var manifestBytes = Read(zip, ManifestEntry, path);
            var manifestHash = zip.GetEntry(ManifestHashEntry) is null ? null : Encoding.ASCII.GetString(Read(zip, ManifestHashEntry, path)).Trim();
            if (manifestHash is not null && !string.Equals(manifestHash, Hash(manifestBytes), StringComparison.OrdinalIgnoreCase))
            {
                throw new ModelFileException(
                    $"'{path}' has been modified or damaged: its manifest (class names, input spec, head) does not match the SHA-256 in '{ManifestHashEntry}'. " +
                    "Use an unmodified copy, or save the model again from the program that trained it.");
            }

            manifest = JsonSerializer.Deserialize<Manifest>(manifestBytes, Json)
                ?? throw new ModelFileException($"'{path}' is not a TransferLearning model file: its manifest is empty.");
            if (manifest.Format != Format)
            {
                throw new ModelFileException($"'{path}' is not a TransferLearning model file (format '{manifest.Format}').");
            }

            if (manifest.Version > Version)
            {
                throw new ModelFileException($"'{path}' was written by a newer TransferLearning (model file version {manifest.Version}); update the library to read it.");
            }

            if (manifest.Version >= HashedManifestVersion && manifestHash is null)
            {
                throw new ModelFileException(
                    $"'{path}' has been modified or damaged: it is a version {manifest.Version} model file but has no '{ManifestHashEntry}' to check its manifest against.");
            }

            backboneWeights = Read(zip, BackboneEntry, path);
            headWeights = Read(zip, HeadEntry, path);
            foreach (var entry in zip.Entries.Where(e => e.FullName.StartsWith(ArchitecturePrefix, StringComparison.Ordinal)))
            {
                architectureFiles[entry.FullName] = Read(zip, entry.FullName, path);
            }
        }
        catch (InvalidDataException e)
        {
            throw new ModelFileException($"'{path}' is truncated or is not a TransferLearning model file: {e.Message}", e);
        }
        catch (JsonException e)
        {
            throw new ModelFileException($"'{path}' has a damaged manifest: {e.Message}", e);
        }

        if (manifest.Classes is not { Count: > 0 } || manifest.Backbone?.Source is null || manifest.InputSpec is null || manifest.Head is null || manifest.Sha256 is null)
        {
            throw new ModelFileException($"'{path}' has an incomplete manifest (classes, backbone, input spec, head and hashes are all required).");
        }

        foreach (var (entry, bytes) in new[] { (BackboneEntry, backboneWeights), (HeadEntry, headWeights) }.Concat(architectureFiles.Select(kv => (kv.Key, kv.Value))))
        {
            if (!manifest.Sha256.TryGetValue(entry, out var expected) || !string.Equals(expected, Hash(bytes), StringComparison.OrdinalIgnoreCase))
            {
                throw new ModelFileException($"'{path}' has been modified or damaged: the SHA-256 of '{entry}' does not match its manifest.");
            }
        }

        var device = TorchDevices.Parse(options.Device);
        var backbone = options.BackboneFactory?.Invoke(manifest.Backbone.Source) ?? RebuildBackbone(manifest, architectureFiles, path);
        nn.Module<Tensor, Tensor>? head = null;
        try
        {
            if (backbone.FeatureSize != manifest.Backbone.FeatureSize)
            {
                throw new ModelFileException(
                    $"'{path}' was trained on a backbone with {manifest.Backbone.FeatureSize} features, but '{manifest.Backbone.Source}' now gives {backbone.FeatureSize}.");
            }

            var headOptions = new HeadOptions { HiddenUnits = manifest.Head.HiddenUnits ?? [], Dropout = manifest.Head.Dropout, Activation = manifest.Head.Activation };
            head = HeadFactory.Create(backbone.FeatureSize, manifest.Classes.Count, headOptions);
            Deserialize(backbone.Module, backboneWeights, path, BackboneEntry);
            Deserialize(head, headWeights, path, HeadEntry);
            backbone.Module.to(device);
            head.to(device);
            backbone.Freeze();
            if (manifest.Backbone.Int8 is { Count: > 0 } int8)
            {
                var channelScales = manifest.Backbone.Int8ChannelScales ?? [];
                if (!backbone.SupportsInt8 || int8.Values.Any(v => v is not ({ Length: 2 } or [_, _, Int8Kernels.SevenBit or Int8Kernels.EightBit]))
                    || channelScales.Values.Any(v => v is null || v.Any(f => !(f > 0) || !float.IsFinite(f))))
                {
                    throw new ModelFileException($"'{path}' runs its backbone in int8, but '{manifest.Backbone.Source}' cannot (or the int8 parameters are damaged).");
                }

                try
                {
                    var activations = int8.ToDictionary(
                        kv => kv.Key,
                        kv => new ActivationQuantization(kv.Value[0], (long)kv.Value[1], kv.Value.Length > 2 ? (int)kv.Value[2] : Int8Kernels.SevenBit),
                        StringComparer.Ordinal);
                    backbone.EnableInt8(new Int8Parameters(activations, channelScales, (manifest.Backbone.Int8FloatConvs ?? []).ToHashSet(StringComparer.Ordinal)));
                }
                catch (Exception e) when (e is InvalidDataException or NotSupportedException)
                {
                    throw new ModelFileException($"'{path}' runs its backbone in int8, but its int8 parameters do not fit the network: {e.Message}", e);
                }
            }

            return new TrainedModel(backbone, head, manifest.Classes, manifest.InputSpec.ToSpec(), headOptions, new History(manifest.History ?? []), device);
        }
        catch
        {
            head?.Dispose();
            backbone.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The backbone network recorded in the file (version 3), or, for files written before that, the one its source
    /// still gives — with a message saying how to make such a file self-contained when the source is gone.
    /// </summary>
    private static Backbone RebuildBackbone(Manifest manifest, Dictionary<string, byte[]> architectureFiles, string path)
    {
        var info = manifest.Backbone!;
        if (info.Architecture is { Format: { } format } recorded)
        {
            var architecture = new BackboneArchitecture(
                format,
                recorded.Settings ?? [],
                architectureFiles.ToDictionary(kv => kv.Key[ArchitecturePrefix.Length..], kv => kv.Value, StringComparer.Ordinal));
            var spec = (info.InputSpec ?? manifest.InputSpec!).ToSpec();
            try
            {
                return BackboneFormats.Named(format).Rebuild(architecture, info.Source!, spec);
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException or ArgumentException or FormatException)
            {
                throw new ModelFileException($"'{path}': its {format} backbone cannot be rebuilt: {e.Message}", e);
            }
        }

        try
        {
            return ModelHub.LoadBackbone(info.Source!);
        }
        catch (Exception e) when (manifest.Version >= 3 && e is FileNotFoundException or DirectoryNotFoundException or HttpRequestException or InvalidDataException or IOException or NotSupportedException)
        {
            throw new ModelFileException(
                $"'{path}' holds a backbone that cannot record its own architecture (a custom module), so it is rebuilt from where it came from " +
                $"('{info.Source}'), and that source cannot be loaded here: {e.Message}", e);
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or HttpRequestException or InvalidDataException or IOException or NotSupportedException)
        {
            throw new ModelFileException(
                $"'{path}' was saved by an earlier version (model file version {manifest.Version}) that records only where its backbone came from " +
                $"('{info.Source}'), and that source cannot be loaded here: {e.Message} Load the model where that source is available and save it " +
                "again: files saved now hold the backbone's architecture and load on their own.", e);
        }
    }

    private static byte[] Serialize(nn.Module module)
    {
        using var buffer = new MemoryStream();
        module.save(buffer);
        return buffer.ToArray();
    }

    private static void Deserialize(nn.Module module, byte[] bytes, string path, string entry)
    {
        try
        {
            using var buffer = new MemoryStream(bytes, writable: false);
            module.load(buffer, strict: true);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or EndOfStreamException or IOException)
        {
            throw new ModelFileException($"'{path}': the weights in '{entry}' do not fit the network: {e.Message}", e);
        }
    }

    private static string Hash(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    private static void Write(ZipArchive zip, string name, byte[] bytes, CompressionLevel level)
    {
        using var stream = zip.CreateEntry(name, level).Open();
        stream.Write(bytes);
    }

    private static byte[] Read(ZipArchive zip, string name, string path)
    {
        var entry = zip.GetEntry(name) ?? throw new ModelFileException($"'{path}' is not a TransferLearning model file: it has no '{name}'.");
        using var stream = entry.Open();
        using var buffer = new MemoryStream();
        stream.CopyTo(buffer);
        return buffer.ToArray();
    }

    internal sealed class Manifest
    {
        public string? Format { get; set; }

        public int Version { get; set; }

        public List<string>? Classes { get; set; }

        public BackboneInfo? Backbone { get; set; }

        public SpecDto? InputSpec { get; set; }

        public HeadDto? Head { get; set; }

        public List<EpochMetrics>? History { get; set; }

        public Dictionary<string, string>? Sha256 { get; set; }
    }

    internal sealed class BackboneInfo
    {
        public string? Source { get; set; }

        public int FeatureSize { get; set; }

        /// <summary>The backbone's own input spec (version 3).</summary>
        public SpecDto? InputSpec { get; set; }

        /// <summary>How to rebuild the network (version 3); its files are the <c>architecture/</c> entries.</summary>
        public ArchitectureDto? Architecture { get; set; }

        /// <summary>
        /// Int8 activation parameters by ONNX value name (of the backbone's ONNX form for torchvision and TF.js networks):
        /// [scale, zero point], or [scale, zero point, 255] for the full 8-bit range (version 4); null for a float backbone.
        /// </summary>
        public Dictionary<string, double[]>? Int8 { get; set; }

        /// <summary>
        /// Int8 cross-layer equalisation factors by ONNX value name: one per channel of that value (version 4); null when
        /// none (float backbones, files written before).
        /// </summary>
        public Dictionary<string, float[]>? Int8ChannelScales { get; set; }

        /// <summary>Convolutions (by output value name) that the int8 backbone runs in float (version 4); null when none.</summary>
        public List<string>? Int8FloatConvs { get; set; }
    }

    internal sealed class ArchitectureDto
    {
        public string? Format { get; set; }

        public Dictionary<string, string>? Settings { get; set; }
    }

    internal sealed class HeadDto
    {
        public List<int>? HiddenUnits { get; set; }

        public double Dropout { get; set; }

        public HeadActivation Activation { get; set; }
    }

    internal sealed class SpecDto
    {
        public int Width { get; set; }

        public int Height { get; set; }

        public float RangeMin { get; set; }

        public float RangeMax { get; set; }

        public ChannelOrder ChannelOrder { get; set; }

        public List<float>? Mean { get; set; }

        public List<float>? Std { get; set; }

        public ResizeMode ResizeMode { get; set; }

        public static SpecDto From(InputSpec s) => new()
        {
            Width = s.Width,
            Height = s.Height,
            RangeMin = s.RangeMin,
            RangeMax = s.RangeMax,
            ChannelOrder = s.ChannelOrder,
            Mean = [.. s.Mean],
            Std = [.. s.Std],
            ResizeMode = s.ResizeMode,
        };

        public InputSpec ToSpec() => new(Width, Height, RangeMin, RangeMax, ChannelOrder, Mean, Std, ResizeMode);
    }
}
