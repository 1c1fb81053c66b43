namespace TransferLearning.Backbones;

/// <summary>
/// Errors meaning a file is not a model of the format its name says (empty, an HTML page, not ONNX protobuf, not JSON,
/// …), as opposed to a valid model the library cannot use. They are <see cref="InvalidDataException"/>s with a mark the
/// hub recognises: it evicts such a download from its cache.
/// </summary>
internal static class ModelFormat
{
    private const string Mark = "TransferLearning.NotAModelFile";

    /// <summary>An <see cref="InvalidDataException"/> marked as "not a model file".</summary>
    public static InvalidDataException Error(string message, Exception? innerException = null)
    {
        var e = new InvalidDataException(message, innerException);
        e.Data[Mark] = true;
        return e;
    }

    /// <summary>Whether <paramref name="e"/> says the file is not a model file.</summary>
    public static bool IsFormatError(Exception e) => e is InvalidDataException && e.Data.Contains(Mark);
}
