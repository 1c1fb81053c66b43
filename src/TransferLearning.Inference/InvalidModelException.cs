namespace TransferLearning.Inference;

/// <summary>
/// A model file is not an ONNX model, or is one that does not follow the contract of TransferLearning's exported
/// classifiers (see <see cref="ImageClassifier"/>); the message names what is missing or wrong.
/// </summary>
public sealed class InvalidModelException : Exception
{
    /// <summary>Creates the exception.</summary>
    public InvalidModelException()
        : this("The model is invalid.")
    {
    }

    /// <summary>Creates the exception with a message.</summary>
    /// <param name="message">The message.</param>
    public InvalidModelException(string message)
        : base(message)
    {
        ModelPath = string.Empty;
        Reason = message;
    }

    /// <summary>Creates the exception with a message and an inner exception.</summary>
    /// <param name="message">The message.</param>
    /// <param name="innerException">The cause.</param>
    public InvalidModelException(string message, Exception? innerException)
        : base(message, innerException)
    {
        ModelPath = string.Empty;
        Reason = message;
    }

    /// <summary>Creates the exception for a model.</summary>
    /// <param name="modelPath">The model file (or a description such as <c>&lt;stream&gt;</c>).</param>
    /// <param name="reason">What is wrong, without the path.</param>
    /// <param name="innerException">The cause, if any.</param>
    public InvalidModelException(string modelPath, string reason, Exception? innerException)
        : base($"'{modelPath}' is not a usable image classifier: {reason}", innerException)
    {
        ModelPath = modelPath;
        Reason = reason;
    }

    /// <summary>The model file (or a description of where the bytes came from).</summary>
    public string ModelPath { get; }

    /// <summary>What is wrong, without the path.</summary>
    public string Reason { get; }
}
