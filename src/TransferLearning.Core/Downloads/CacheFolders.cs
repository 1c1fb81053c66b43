namespace TransferLearning.Downloads;

/// <summary>The default cache folders: one per kind (models, datasets), each overridable by an environment variable.</summary>
internal static class CacheFolders
{
    /// <summary>
    /// <c>$<paramref name="environmentVariable"/></c> if set, else <c>$XDG_CACHE_HOME/transferlearning/<paramref name="leaf"/></c>,
    /// else <c>~/.cache/transferlearning/<paramref name="leaf"/></c> (on Windows, under the local application data folder).
    /// </summary>
    public static string Resolve(string environmentVariable, string leaf)
    {
        var env = Environment.GetEnvironmentVariable(environmentVariable);
        if (!string.IsNullOrWhiteSpace(env))
        {
            return Path.GetFullPath(env);
        }

        if (OperatingSystem.IsWindows())
        {
            return Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData), "transferlearning", leaf);
        }

        var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        var root = !string.IsNullOrWhiteSpace(xdg) && Path.IsPathRooted(xdg)
            ? xdg
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "transferlearning", leaf);
    }
}
