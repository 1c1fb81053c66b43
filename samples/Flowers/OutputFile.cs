namespace Flowers;

/// <summary>Writes an output file whole or not at all.</summary>
internal static class OutputFile
{
    /// <summary>
    /// Writes through a temporary file beside <paramref name="path"/> (same extension, so format-by-name writers work),
    /// renamed over the target once complete; on failure the temporary file is removed and an existing target is kept.
    /// </summary>
    public static void Write(string path, Action<string> writeTo)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        var temp = Path.Combine(folder, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp{Path.GetExtension(full)}");
        try
        {
            writeTo(temp);
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}
