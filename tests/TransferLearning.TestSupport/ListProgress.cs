namespace TransferLearning.TestSupport;

/// <summary>Collects progress reports (thread-safe).</summary>
public sealed class ListProgress<T> : IProgress<T>
{
    private readonly Lock _gate = new();

    public List<T> Items { get; } = [];

    public void Report(T value)
    {
        lock (_gate)
        {
            Items.Add(value);
        }
    }
}
