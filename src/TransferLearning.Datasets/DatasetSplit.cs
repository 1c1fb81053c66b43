namespace TransferLearning.Datasets;

/// <summary>A training set and a validation set (and an optional test set) sharing the same classes.</summary>
public sealed class DatasetSplit
{
    /// <summary>Creates a split from datasets that have identical class lists.</summary>
    /// <param name="train">Training samples.</param>
    /// <param name="validation">Validation samples.</param>
    /// <param name="test">Optional held-out samples; null for none.</param>
    /// <exception cref="ArgumentException">The class lists differ.</exception>
    public DatasetSplit(ImageDataset train, ImageDataset validation, ImageDataset? test = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(validation);
        RequireSameClasses(train, validation, nameof(validation));
        test ??= new ImageDataset(train.Classes, []);
        RequireSameClasses(train, test, nameof(test));
        Train = train;
        Validation = validation;
        Test = test;
    }

    /// <summary>Training samples.</summary>
    public ImageDataset Train { get; }

    /// <summary>Validation samples.</summary>
    public ImageDataset Validation { get; }

    /// <summary>Samples in neither set (the remainder when the fractions sum to less than 1); may be empty.</summary>
    public ImageDataset Test { get; }

    /// <summary>Class names shared by all sets.</summary>
    public IReadOnlyList<string> Classes => Train.Classes;

    /// <summary>Loads a training folder and a separate validation folder, each with one sub-folder per class.</summary>
    /// <param name="trainRoot">Training folder.</param>
    /// <param name="validationRoot">Validation folder; must have the same class sub-folders.</param>
    /// <param name="options">Loading options for both folders.</param>
    /// <returns>The split.</returns>
    /// <exception cref="InvalidDataException">The two folders have different classes.</exception>
    public static DatasetSplit FromFolders(string trainRoot, string validationRoot, ImageFolderOptions? options = null)
    {
        var train = ImageFolder.Load(trainRoot, options);
        var validation = ImageFolder.Load(validationRoot, options);
        if (!train.Classes.SequenceEqual(validation.Classes, StringComparer.Ordinal))
        {
            throw new InvalidDataException(
                $"The validation folder '{validationRoot}' has classes [{string.Join(", ", validation.Classes)}] but the training folder " +
                $"'{trainRoot}' has [{string.Join(", ", train.Classes)}]; both need the same class sub-folders.");
        }

        return new DatasetSplit(train, validation);
    }

    private static void RequireSameClasses(ImageDataset a, ImageDataset b, string name)
    {
        if (!a.Classes.SequenceEqual(b.Classes, StringComparer.Ordinal))
        {
            throw new ArgumentException(
                $"The class lists differ: [{string.Join(", ", a.Classes)}] vs [{string.Join(", ", b.Classes)}].", name);
        }
    }
}
