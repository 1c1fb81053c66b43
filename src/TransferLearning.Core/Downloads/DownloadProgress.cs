namespace TransferLearning.Downloads;

/// <summary>Stage of a download (and, for catalog datasets, of what follows it).</summary>
public enum DownloadStage
{
    /// <summary>Receiving bytes.</summary>
    Downloading,

    /// <summary>Checking the SHA-256 of the downloaded file.</summary>
    Verifying,

    /// <summary>Unpacking an archive (catalog datasets).</summary>
    Extracting,

    /// <summary>The file (or dataset) is ready.</summary>
    Done,
}

/// <summary>Progress of one download, reported by <c>ModelHub</c>, <c>TransferLearner.FromAsync</c> and the dataset catalog.</summary>
/// <param name="Url">What is being downloaded.</param>
/// <param name="BytesReceived">Bytes of the file on disk so far (a resumed download counts the bytes it kept).</param>
/// <param name="TotalBytes">Size of the file, when the server tells it.</param>
public readonly record struct DownloadProgress(Uri Url, long BytesReceived, long? TotalBytes)
{
    /// <summary>What is happening; <see cref="DownloadStage.Downloading"/> unless set.</summary>
    public DownloadStage Stage { get; init; }
}
