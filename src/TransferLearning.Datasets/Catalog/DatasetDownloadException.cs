namespace TransferLearning.Datasets;

/// <summary>A dataset archive could not be downloaded, verified or extracted.</summary>
public sealed class DatasetDownloadException : IOException
{
    /// <summary>Creates the exception.</summary>
    public DatasetDownloadException()
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public DatasetDownloadException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception with a message and a cause.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public DatasetDownloadException(string message, Exception? innerException)
        : base(message, innerException)
    {
    }
}

/// <summary>Stage of a catalog download.</summary>
public enum DownloadStage
{
    /// <summary>Receiving bytes.</summary>
    Downloading,

    /// <summary>Checking the SHA-256 of the archive.</summary>
    Verifying,

    /// <summary>Unpacking the archive.</summary>
    Extracting,

    /// <summary>The dataset is ready.</summary>
    Done,
}

/// <summary>Progress of a catalog download.</summary>
/// <param name="Stage">What is happening.</param>
/// <param name="BytesReceived">Bytes of the archive on disk so far.</param>
/// <param name="TotalBytes">Size of the archive, when the server tells it.</param>
public sealed record DownloadProgress(DownloadStage Stage, long BytesReceived, long? TotalBytes);
