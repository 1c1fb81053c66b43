namespace TransferLearning.Datasets;

/// <summary>A file could not be read or decoded as an image.</summary>
public sealed class InvalidImageException : Exception
{
    /// <summary>Creates the exception.</summary>
    public InvalidImageException()
        : this("The image is invalid.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public InvalidImageException(string message)
        : base(message)
    {
        FilePath = string.Empty;
        Reason = message;
    }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public InvalidImageException(string message, Exception? innerException)
        : base(message, innerException)
    {
        FilePath = string.Empty;
        Reason = message;
    }

    /// <summary>Creates the exception for a file.</summary>
    /// <param name="filePath">The file (or a description of the stream) that failed.</param>
    /// <param name="reason">Why it failed.</param>
    /// <param name="innerException">The cause, if any.</param>
    public InvalidImageException(string filePath, string reason, Exception? innerException)
        : base($"'{filePath}' is not a usable image: {reason}", innerException)
    {
        FilePath = filePath;
        Reason = reason;
    }

    /// <summary>The file (or a description of the stream) that failed.</summary>
    public string FilePath { get; }

    /// <summary>Why the file failed, without the path.</summary>
    public string Reason { get; }
}
