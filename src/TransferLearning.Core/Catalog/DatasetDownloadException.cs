namespace TransferLearning.Catalog;

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
