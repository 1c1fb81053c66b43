using System.Text;

namespace TransferLearning.Hub;

/// <summary>Recognises downloads that cannot be model files, so the hub cache never keeps them.</summary>
internal static class DownloadedModel
{
    private static readonly string[] MarkupStarts = ["<!doctype", "<html", "<head", "<body", "<?xml", "<!--"];

    /// <summary>
    /// Why the file at <paramref name="path"/> cannot be a model file, or null when it may be one. Recognised: an HTML or
    /// XML page (a captive portal, a login page or an error page served with status 200).
    /// </summary>
    public static string? Problem(string path)
    {
        Span<byte> head = stackalloc byte[512];
        int read;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1))
        {
            read = file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }

        var text = Encoding.UTF8.GetString(head[..read]).TrimStart('\uFEFF', ' ', '\t', '\r', '\n');
        return MarkupStarts.Any(m => text.StartsWith(m, StringComparison.OrdinalIgnoreCase))
            ? "is an HTML page, not a model file (a captive portal, a login page or an error page served as if it were the file?)"
            : null;
    }

    /// <summary>Removes a cached download and its checksum record, so the next use fetches it again.</summary>
    public static void Evict(string path)
    {
        foreach (var file in new[] { Downloads.FileDownloader.SidecarPath(path), path })
        {
            try
            {
                File.Delete(file);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                // Best effort: a file without its sidecar is fetched again anyway.
            }
        }
    }
}
