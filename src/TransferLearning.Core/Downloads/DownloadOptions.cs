namespace TransferLearning.Downloads;

/// <summary>
/// How a download is retried and how long a silent transfer is waited for: one type, with one set of defaults, for the
/// model hub (<see cref="Hub.BackboneLoadOptions.Download"/>) and the dataset catalog
/// (<see cref="Catalog.TfFlowersOptions.Download"/>). Setters check their value; whoever uses the options keeps its own copy.
/// </summary>
public sealed class DownloadOptions
{
    /// <summary>Default number of retries after the first transfer (4 transfers at most).</summary>
    public const int DefaultMaxRetries = 3;

    /// <summary>Largest <see cref="MaxRetries"/>.</summary>
    public const int MaxRetriesLimit = 10;

    /// <summary>Default wait before the first retry (1 s).</summary>
    public static readonly TimeSpan DefaultRetryDelay = TimeSpan.FromSeconds(1);

    /// <summary>Largest <see cref="RetryDelay"/> (1 min; doubled on each further retry).</summary>
    public static readonly TimeSpan RetryDelayLimit = TimeSpan.FromMinutes(1);

    /// <summary>Default <see cref="StallTimeout"/> (60 s).</summary>
    public static readonly TimeSpan DefaultStallTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Largest <see cref="StallTimeout"/> (1 day).</summary>
    public static readonly TimeSpan StallTimeoutLimit = TimeSpan.FromDays(1);

    private int _maxRetries = DefaultMaxRetries;
    private TimeSpan _retryDelay = DefaultRetryDelay;
    private TimeSpan _stallTimeout = DefaultStallTimeout;

    /// <summary>
    /// How many times a dropped, stalled or failed (HTTP 5xx, 408, 429) transfer is tried again, resuming where it
    /// stopped: 0 to <see cref="MaxRetriesLimit"/>. Default <see cref="DefaultMaxRetries"/>.
    /// </summary>
    public int MaxRetries
    {
        get => _maxRetries;
        set => _maxRetries = value is >= 0 and <= MaxRetriesLimit
            ? value
            : throw OutOfRange(nameof(MaxRetries), $"MaxRetries must be from 0 to {MaxRetriesLimit}; got {value}.");
    }

    /// <summary>
    /// Wait before the first retry, doubled on each further retry: zero to <see cref="RetryDelayLimit"/>.
    /// Default <see cref="DefaultRetryDelay"/>.
    /// </summary>
    public TimeSpan RetryDelay
    {
        get => _retryDelay;
        set => _retryDelay = value >= TimeSpan.Zero && value <= RetryDelayLimit
            ? value
            : throw OutOfRange(nameof(RetryDelay), $"RetryDelay must be from 0 to {RetryDelayLimit.TotalSeconds:0.###} s; got {value.TotalSeconds:0.###} s.");
    }

    /// <summary>
    /// A transfer that receives no response or no data for this long is abandoned and retried (resuming): more than
    /// zero, at most <see cref="StallTimeoutLimit"/>. Default <see cref="DefaultStallTimeout"/>.
    /// </summary>
    public TimeSpan StallTimeout
    {
        get => _stallTimeout;
        set => _stallTimeout = value > TimeSpan.Zero && value <= StallTimeoutLimit
            ? value
            : throw OutOfRange(nameof(StallTimeout), $"StallTimeout must be more than 0 s and at most {StallTimeoutLimit.TotalSeconds:0.###} s; got {value.TotalSeconds:0.###} s.");
    }

    /// <summary>HTTP client to download with (e.g. one with a proxy); null (default) uses one shared by the library.</summary>
    public HttpClient? HttpClient { get; set; }

    /// <summary>Transfers tried at most: the first one and <see cref="MaxRetries"/> more.</summary>
    internal int MaxAttempts => MaxRetries + 1;

    /// <summary>A copy of these settings (the client is shared, not copied).</summary>
    internal DownloadOptions Clone() => (DownloadOptions)MemberwiseClone();

    private static ArgumentOutOfRangeException OutOfRange(string name, FormattableString message) =>
        new(name, FormattableString.Invariant(message));
}
