using TransferLearning.Datasets;
using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Inference.Tests;

public sealed class LoadTests
{
    [Fact]
    public void Load_ReadsTheContractMetadata()
    {
        using var classifier = ImageClassifier.Load(Fixtures.Flowers);

        Assert.Equal(["daisy", "dandelion", "roses", "sunflowers", "tulips"], classifier.Classes);
        Assert.Equal(32, classifier.InputWidth);
        Assert.Equal(24, classifier.InputHeight);
        Assert.Equal(ResizeMode.Stretch, classifier.ResizeMode);
        Assert.Equal("fixture:tiny-conv", classifier.Source);
        Assert.Equal("0.0.0-fixture", classifier.Metadata["transferlearning_version"]);
        Assert.Equal("[24, 32]", classifier.Metadata["input_size"]);
        Assert.Equal(5, classifier.Metadata.Count);
    }

    [Fact]
    public void Load_CenterCropModel()
    {
        using var classifier = ImageClassifier.Load(Fixtures.SquareCrop);

        Assert.Equal(ResizeMode.CenterCrop, classifier.ResizeMode);
        Assert.Equal((16, 16), (classifier.InputWidth, classifier.InputHeight));
        Assert.Equal(["alpha", "beta", "gamma"], classifier.Classes);
    }

    [Fact]
    public void Load_FromBytesAndStream_SameAsFromFile()
    {
        var photo = Fixtures.Picture;
        using var fromFile = ImageClassifier.Load(Fixtures.Flowers);
        using var fromBytes = ImageClassifier.Load(File.ReadAllBytes(Fixtures.Flowers));
        using var stream = new MemoryStream(File.ReadAllBytes(Fixtures.Flowers));
        using var fromStream = ImageClassifier.Load(stream);

        var expected = fromFile.Predict(photo).Probabilities;
        Assert.Equal(expected, fromBytes.Predict(photo).Probabilities);
        Assert.Equal(expected, fromStream.Predict(photo).Probabilities);
        Assert.Equal(fromFile.Classes, fromStream.Classes);
    }

    [Fact]
    public void Load_MissingFile_FileNotFoundNamingIt()
    {
        using var dir = new TempDir();
        var path = dir.Combine("missing.onnx");

        var ex = Assert.Throws<FileNotFoundException>(() => ImageClassifier.Load(path));

        Assert.Equal(path, ex.FileName);
        Assert.Equal($"The model file '{path}' does not exist.", ex.Message);
    }

    [Fact]
    public void Load_Directory_IsRefused()
    {
        using var dir = new TempDir();

        var ex = Assert.Throws<InvalidModelException>(() => ImageClassifier.Load(dir.Path));

        Assert.Equal("the path is a directory, not an .onnx file", ex.Reason);
    }

    [Theory]
    [InlineData("text")]
    [InlineData("empty")]
    [InlineData("png")]
    [InlineData("truncated")]
    public void Load_NotAnOnnxModel_IsRefusedNamingTheFile(string kind)
    {
        using var dir = new TempDir();
        var path = dir.Combine("model.onnx");
        switch (kind)
        {
            case "text":
                File.WriteAllText(path, "this is not a model\n");
                break;
            case "empty":
                File.WriteAllBytes(path, []);
                break;
            case "png":
                File.Copy(Fixtures.Model("flowers_stretch_noise.png"), path);
                break;
            default:
                var bytes = File.ReadAllBytes(Fixtures.Flowers);
                File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);
                break;
        }

        var ex = Assert.Throws<InvalidModelException>(() => ImageClassifier.Load(path));

        Assert.Equal(path, ex.ModelPath);
        Assert.StartsWith($"'{path}' is not a usable image classifier: ONNX Runtime cannot load it as an ONNX model (", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_BytesThatAreNotOnnx_NamedAsBytes()
    {
        var ex = Assert.Throws<InvalidModelException>(() => ImageClassifier.Load("not a model"u8.ToArray()));

        Assert.Equal("<bytes>", ex.ModelPath);
    }

    private const string Contract = "it does not follow the contract of an exported TransferLearning classifier: ";

    [Theory]
    [InlineData("violation_input_name.onnx", "it has no input named 'image' (its inputs: 'input')")]
    [InlineData("violation_output_name.onnx", "it has no output named 'probabilities' (its outputs: 'output', 'logits')")]
    [InlineData("violation_no_metadata.onnx", "its metadata_props lack 'classes', 'input_size', 'resize' (it has none)")]
    [InlineData("violation_bad_resize.onnx", "metadata 'resize' is 'fit'; expected \"stretch\" or \"center-crop\"")]
    [InlineData("violation_size_mismatch.onnx", "metadata 'input_size' is [32, 24] ([H, W]) but input 'image' is [N, 3, 24, 32]")]
    [InlineData("violation_class_count.onnx", "metadata 'classes' names 4 classes but output 'probabilities' has 5")]
    [InlineData("violation_bad_classes.onnx", "metadata 'classes' must be a JSON array of at least one class name; it is 'daisy, dandelion'")]
    [InlineData("violation_channels.onnx", "input 'image' must be a float32 tensor [N, 3, H, W]; it is float32 [N, 1, 24, 32]")]
    [InlineData("violation_batch.onnx", "input 'image' must have a dynamic batch dimension N (or 1); it is float32 [4, 3, 24, 32]")]
    public void Load_ContractViolation_NamesWhatIsWrong(string file, string reason)
    {
        var path = Fixtures.Model(file);

        var ex = Assert.Throws<InvalidModelException>(() => ImageClassifier.Load(path));

        Assert.Equal(Contract + reason, ex.Reason);
        Assert.Equal($"'{path}' is not a usable image classifier: {Contract}{reason}", ex.Message);
    }

    [Fact]
    public void Options_SettersCheckValues_DefaultsAreDocumented()
    {
        var options = new ImageClassifierOptions();

        Assert.Equal(0, options.IntraOpThreads);
        Assert.Equal(Environment.ProcessorCount, options.DecodeThreads);
        Assert.Equal(ImageDecodeOptions.DefaultMaxPixels, options.Decode.MaxPixels);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.IntraOpThreads = -1);
        Assert.Throws<ArgumentOutOfRangeException>(() => options.DecodeThreads = 0);
        Assert.Throws<ArgumentNullException>(() => options.Decode = null!);
        options.IntraOpThreads = 1;
        options.DecodeThreads = 1;

        using var classifier = ImageClassifier.Load(Fixtures.Flowers, options);
        Assert.Equal(5, classifier.Predict(Fixtures.Picture).Probabilities.Count);
    }

    [Fact]
    public void Dispose_Twice_IsHarmless_PredictAfterwardsThrows()
    {
        var classifier = ImageClassifier.Load(Fixtures.Flowers);
        classifier.Dispose();
        classifier.Dispose();

        Assert.Throws<ObjectDisposedException>(() => classifier.Predict(Fixtures.Picture));
        Assert.Throws<ObjectDisposedException>(() => classifier.Predict(Fixtures.Pictures));
    }
}
