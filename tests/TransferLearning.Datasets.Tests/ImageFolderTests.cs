using SixLabors.ImageSharp.PixelFormats;

namespace TransferLearning.Datasets.Tests;

public sealed class ImageFolderTests : IDisposable
{
    private static readonly Rgb24 Grey = new(90, 90, 90);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Load_ClassFolders_AreOrdinalOrderedWithIndexMap()
    {
        foreach (var c in new[] { "tulips", "Roses", "daisy", "_other", "Zinnia" })
        {
            TestImages.SolidPng(_dir.Combine(c, "a.png"), 2, 2, Grey);
        }

        var folder = ImageFolder.Load(_dir.Path);
        Assert.Equal(["Roses", "Zinnia", "_other", "daisy", "tulips"], folder.Classes);
        Assert.Equal(3, folder.ClassToIndex["daisy"]);
        Assert.All(folder.Samples, s => Assert.Equal(folder.Classes[s.Label], Path.GetFileName(Path.GetDirectoryName(s.Path))));
        Assert.Equal(Path.GetFullPath(_dir.Path), folder.Root);
    }

    [Fact]
    public void Load_Samples_AreSortedByClassThenPath()
    {
        TestImages.SolidPng(_dir.Combine("b", "z.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("b", "a.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("a", "m.png"), 2, 2, Grey);
        var folder = ImageFolder.Load(_dir.Path);
        Assert.Equal(["m.png", "a.png", "z.png"], folder.Samples.Select(s => Path.GetFileName(s.Path)));
        Assert.Equal([0, 1, 1], folder.Samples.Select(s => s.Label));
        Assert.Equal([1, 2], folder.CountPerClass());
    }

    [Fact]
    public void Load_FilesRecognisedByContent_NotExtension()
    {
        TestImages.SolidPng(_dir.Combine("a", "png-named.jpg"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("a", "no-extension"), 2, 2, Grey);
        File.WriteAllText(_dir.Combine("a", "README.txt"), "about this class");
        File.WriteAllText(_dir.Combine("a", ".DS_Store"), "junk");
        TestImages.SolidJpeg(_dir.Combine("b", "x.jpeg"), 2, 2, Grey);
        var folder = ImageFolder.Load(_dir.Path);
        Assert.Equal(["no-extension", "png-named.jpg", "x.jpeg"], folder.Samples.Select(s => Path.GetFileName(s.Path)));
        Assert.Equal([_dir.Combine("a", "README.txt")], folder.IgnoredFiles);
        Assert.Empty(folder.Skipped);
    }

    [Fact]
    public void Load_TextNamedJpg_FailsNamingFileByDefault()
    {
        TestImages.SolidPng(_dir.Combine("a", "ok.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("b", "ok.png"), 2, 2, Grey);
        var bad = _dir.Combine("b", "fake.jpg");
        File.WriteAllText(bad, "hello");
        var ex = Assert.Throws<InvalidImageException>(() => ImageFolder.Load(_dir.Path));
        Assert.Equal(bad, ex.FilePath);
        Assert.Contains("not a recognised image format", ex.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_SkipPolicy_ListsZeroByteAndTextFiles()
    {
        TestImages.SolidPng(_dir.Combine("a", "ok.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("b", "ok.png"), 2, 2, Grey);
        File.WriteAllText(_dir.Combine("b", "fake.jpg"), "hello");
        File.WriteAllBytes(_dir.Combine("a", "empty.png"), []);
        var folder = ImageFolder.Load(_dir.Path, new ImageFolderOptions { BadImages = BadImagePolicy.Skip });
        Assert.Equal(2, folder.Count);
        Assert.Equal(
            [(_dir.Combine("a", "empty.png"), "the file is empty (0 bytes)"), (_dir.Combine("b", "fake.jpg"), "the content is not a recognised image format")],
            folder.Skipped.Select(s => (s.Path, s.Reason)));
    }

    [Fact]
    public void Load_EmptyClassFolder_ThrowsUnlessAllowed()
    {
        TestImages.SolidPng(_dir.Combine("a", "ok.png"), 2, 2, Grey);
        Directory.CreateDirectory(_dir.Combine("b"));
        var ex = Assert.Throws<InvalidDataException>(() => ImageFolder.Load(_dir.Path));
        Assert.Equal($"The class folder '{_dir.Combine("b")}' contains no images; add images, remove the folder, or set ImageFolderOptions.AllowEmptyClasses.", ex.Message);
        var folder = ImageFolder.Load(_dir.Path, new ImageFolderOptions { AllowEmptyClasses = true });
        Assert.Equal(["a", "b"], folder.Classes);
        Assert.Equal([1, 0], folder.CountPerClass());
    }

    [Fact]
    public void Load_SingleClass_ThrowsUnlessMinimumLowered()
    {
        TestImages.SolidPng(_dir.Combine("only", "ok.png"), 2, 2, Grey);
        var ex = Assert.Throws<InvalidDataException>(() => ImageFolder.Load(_dir.Path));
        Assert.Contains("has 1 class sub-folder(s) (only) but at least 2 are needed", ex.Message, StringComparison.Ordinal);
        Assert.Single(ImageFolder.Load(_dir.Path, new ImageFolderOptions { MinimumClasses = 1 }).Classes);
    }

    [Fact]
    public void Load_NoClassFolders_Throws()
    {
        TestImages.SolidPng(_dir.Combine("loose.png"), 2, 2, Grey);
        var ex = Assert.Throws<InvalidDataException>(() => ImageFolder.Load(_dir.Path));
        Assert.StartsWith($"The image folder '{_dir.Path}' has no class sub-folders", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Load_MissingFolder_ThrowsDirectoryNotFound()
    {
        var missing = _dir.Combine("nope");
        var ex = Assert.Throws<DirectoryNotFoundException>(() => ImageFolder.Load(missing));
        Assert.Equal($"The image folder '{missing}' does not exist.", ex.Message);
    }

    [Fact]
    public void Load_Recursive_IncludesNestedFiles()
    {
        TestImages.SolidPng(_dir.Combine("a", "x.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("a", "sub", "y.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("b", "z.png"), 2, 2, Grey);
        Assert.Equal(2, ImageFolder.Load(_dir.Path).Count);
        Assert.Equal(3, ImageFolder.Load(_dir.Path, new ImageFolderOptions { Recursive = true }).Count);
    }

    [Fact]
    public void FromFolders_SeparateValidationFolder_LoadsBoth()
    {
        foreach (var root in new[] { "train", "val" })
        {
            TestImages.SolidPng(_dir.Combine(root, "a", "1.png"), 2, 2, Grey);
            TestImages.SolidPng(_dir.Combine(root, "b", "1.png"), 2, 2, Grey);
        }

        TestImages.SolidPng(_dir.Combine("train", "b", "2.png"), 2, 2, Grey);
        var split = DatasetSplit.FromFolders(_dir.Combine("train"), _dir.Combine("val"));
        Assert.Equal(3, split.Train.Count);
        Assert.Equal(2, split.Validation.Count);
        Assert.Equal(["a", "b"], split.Classes);
        Assert.Empty(split.Test.Samples);
    }

    [Fact]
    public void FromFolders_DifferentClasses_Throws()
    {
        TestImages.SolidPng(_dir.Combine("train", "a", "1.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("train", "b", "1.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("val", "a", "1.png"), 2, 2, Grey);
        TestImages.SolidPng(_dir.Combine("val", "c", "1.png"), 2, 2, Grey);
        var ex = Assert.Throws<InvalidDataException>(() => DatasetSplit.FromFolders(_dir.Combine("train"), _dir.Combine("val")));
        Assert.Contains("has classes [a, c] but the training folder", ex.Message, StringComparison.Ordinal);
    }
}
