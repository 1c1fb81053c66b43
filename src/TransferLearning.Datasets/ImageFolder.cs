using TransferLearning.Datasets.Decoding;

namespace TransferLearning.Datasets;

/// <summary>Options for <see cref="ImageFolder.Load"/>.</summary>
public sealed class ImageFolderOptions
{
    /// <summary>
    /// What to do with a file that has an image extension but whose content is not an image (empty, text, unreadable):
    /// fail (default) or skip and list it in <see cref="ImageFolder.Skipped"/>.
    /// </summary>
    public BadImagePolicy BadImages { get; set; } = BadImagePolicy.Fail;

    /// <summary>Fewest classes accepted (default 2: a classifier needs at least two). Set to 1 to load a single class.</summary>
    public int MinimumClasses { get; set; } = 2;

    /// <summary>Whether a class folder without images is accepted (kept as a class with no samples). Default false: it is an error.</summary>
    public bool AllowEmptyClasses { get; set; }

    /// <summary>Whether images in nested folders of a class folder belong to that class. Default false (only direct files).</summary>
    public bool Recursive { get; set; }
}

/// <summary>
/// A folder with one sub-folder per class (the tf_flowers / Keras <c>image_dataset_from_directory</c> layout).
/// Classes are the sub-folder names in ordinal order; a class index is its position in that order.
/// </summary>
/// <remarks>
/// Files are recognised by content, not extension: a PNG named <c>.jpg</c> is accepted as a PNG, and an image with an
/// unusual extension is accepted too. A file whose content is not an image is a bad image if its extension is an image
/// extension (<c>.jpg</c>, <c>.png</c>, …), handled by <see cref="ImageFolderOptions.BadImages"/>; otherwise (e.g.
/// <c>notes.txt</c>) it is ignored and listed in <see cref="IgnoredFiles"/>. Hidden entries (names starting with '.') are ignored.
/// Only the first bytes are checked here; corrupt image data is found when decoding (see <see cref="Pipeline.ImageLoader"/>).
/// </remarks>
public sealed class ImageFolder : ImageDataset
{
    private static readonly HashSet<string> ImageExtensions = new(StringComparer.OrdinalIgnoreCase)
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff", ".tga", ".pbm", ".pgm", ".ppm",
    };

    private ImageFolder(string root, IReadOnlyList<string> classes, IReadOnlyList<ImageSample> samples, IReadOnlyList<SkippedImage> skipped, IReadOnlyList<string> ignored)
        : base(classes, samples)
    {
        Root = root;
        Skipped = skipped;
        IgnoredFiles = ignored;
    }

    /// <summary>The folder that was loaded (full path).</summary>
    public string Root { get; }

    /// <summary>Files with an image extension whose content is not an image, left out under <see cref="BadImagePolicy.Skip"/>.</summary>
    public IReadOnlyList<SkippedImage> Skipped { get; }

    /// <summary>Files that are neither images nor named like images (e.g. a README), ignored.</summary>
    public IReadOnlyList<string> IgnoredFiles { get; }

    /// <summary>Scans a folder with one sub-folder per class.</summary>
    /// <param name="root">The folder.</param>
    /// <param name="options">Options; null for defaults.</param>
    /// <returns>The dataset; samples are ordered by class, then by path (ordinal).</returns>
    /// <exception cref="DirectoryNotFoundException">The folder does not exist.</exception>
    /// <exception cref="InvalidDataException">No class folders, too few classes, or an empty class folder.</exception>
    /// <exception cref="InvalidImageException">A file named like an image is not one and <see cref="ImageFolderOptions.BadImages"/> is <see cref="BadImagePolicy.Fail"/>.</exception>
    public static ImageFolder Load(string root, ImageFolderOptions? options = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(root);
        options ??= new ImageFolderOptions();
        var full = Path.GetFullPath(root);
        if (!Directory.Exists(full))
        {
            throw new DirectoryNotFoundException($"The image folder '{full}' does not exist.");
        }

        var classDirs = Directory.EnumerateDirectories(full)
            .Where(d => !Path.GetFileName(d).StartsWith('.'))
            .OrderBy(d => Path.GetFileName(d), StringComparer.Ordinal)
            .ToList();
        if (classDirs.Count == 0)
        {
            throw new InvalidDataException(
                $"The image folder '{full}' has no class sub-folders; put each class's images in its own sub-folder (e.g. {full}/daisy/*.jpg).");
        }

        if (classDirs.Count < options.MinimumClasses)
        {
            throw new InvalidDataException(
                $"The image folder '{full}' has {classDirs.Count} class sub-folder(s) ({string.Join(", ", classDirs.Select(Path.GetFileName))}) " +
                $"but at least {options.MinimumClasses} are needed (ImageFolderOptions.MinimumClasses).");
        }

        var classes = new List<string>();
        var samples = new List<ImageSample>();
        var skipped = new List<SkippedImage>();
        var ignored = new List<string>();
        var search = options.Recursive ? SearchOption.AllDirectories : SearchOption.TopDirectoryOnly;
        foreach (var dir in classDirs)
        {
            var label = classes.Count;
            classes.Add(Path.GetFileName(dir));
            var files = Directory.EnumerateFiles(dir, "*", search)
                .Where(f => !Path.GetFileName(f).StartsWith('.') && !Path.GetRelativePath(dir, f).Split(Path.DirectorySeparatorChar).Any(p => p.StartsWith('.')))
                .OrderBy(f => f, StringComparer.Ordinal);
            var before = samples.Count;
            foreach (var file in files)
            {
                var reason = Sniff(file);
                if (reason is null)
                {
                    samples.Add(new ImageSample(file, label));
                }
                else if (ImageExtensions.Contains(Path.GetExtension(file)))
                {
                    if (options.BadImages == BadImagePolicy.Fail)
                    {
                        throw new InvalidImageException(file, reason + " (set ImageFolderOptions.BadImages = BadImagePolicy.Skip to leave such files out)", null);
                    }

                    skipped.Add(new SkippedImage(file, reason));
                }
                else
                {
                    ignored.Add(file);
                }
            }

            if (samples.Count == before && !options.AllowEmptyClasses)
            {
                throw new InvalidDataException(
                    $"The class folder '{dir}' contains no images; add images, remove the folder, or set ImageFolderOptions.AllowEmptyClasses.");
            }
        }

        return new ImageFolder(full, classes, samples, skipped, ignored);
    }

    private static string? Sniff(string file)
    {
        try
        {
            if (new FileInfo(file).Length == 0)
            {
                return "the file is empty (0 bytes)";
            }

            return ImageDecoding.DetectFileFormat(file) is null ? "the content is not a recognised image format" : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"the file could not be read ({ex.GetType().Name}: {ex.Message})";
        }
    }
}
