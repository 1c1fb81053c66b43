using System.Buffers.Binary;
using System.Text;

namespace TransferLearning.Native;

/// <summary>
/// Reads and edits the version-needs table (<c>.gnu.version_r</c>) of a 64-bit little-endian ELF shared library.
/// Marking a need <em>weak</em> (<c>VER_FLG_WEAK</c>) tells the dynamic loader that a missing version is not fatal.
/// </summary>
internal static class ElfVersionNeedPatcher
{
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const ushort VerFlgWeak = 0x2;

    /// <summary>One version a library needs from another.</summary>
    internal readonly record struct VersionNeed(string File, string Version, ushort Flags, int FlagsOffset)
    {
        public bool IsWeak => (Flags & VerFlgWeak) != 0;
    }

    /// <summary>Lists every version need in the image.</summary>
    /// <param name="image">The whole ELF file.</param>
    /// <param name="name">File name used in error messages.</param>
    public static IReadOnlyList<VersionNeed> ReadNeeds(ReadOnlySpan<byte> image, string name)
    {
        if (image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F')
        {
            throw new InvalidDataException($"'{name}' is not an ELF file.");
        }

        if (image[4] != 2 || image[5] != 1)
        {
            throw new InvalidDataException($"'{name}' is not a 64-bit little-endian ELF file; only those can be patched.");
        }

        var shoff = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(image[0x28..]));
        var shentsize = BinaryPrimitives.ReadUInt16LittleEndian(image[0x3A..]);
        var shnum = BinaryPrimitives.ReadUInt16LittleEndian(image[0x3C..]);
        if (shoff <= 0 || shentsize < 64 || (long)shoff + ((long)shnum * shentsize) > image.Length)
        {
            throw new InvalidDataException($"'{name}' has a truncated or missing section header table.");
        }

        var needs = new List<VersionNeed>();
        for (var i = 0; i < shnum; i++)
        {
            var sh = image.Slice(shoff + (i * shentsize), shentsize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(sh[4..]) != ShtGnuVerneed)
            {
                continue;
            }

            var offset = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(sh[0x18..]));
            var count = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x2C..]); // sh_info: number of Verneed entries
            var link = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh[0x28..]);
            if (link >= shnum)
            {
                throw new InvalidDataException($"'{name}': .gnu.version_r links to a missing string table.");
            }

            var strSh = image.Slice(shoff + (link * shentsize), shentsize);
            var strOffset = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(strSh[0x18..]));
            var strSize = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(strSh[0x20..]));
            var strings = image.Slice(strOffset, strSize);

            var entry = offset;
            for (var n = 0; n < count; n++)
            {
                var vn = image[entry..];
                var cnt = BinaryPrimitives.ReadUInt16LittleEndian(vn[2..]);
                var file = ReadString(strings, BinaryPrimitives.ReadUInt32LittleEndian(vn[4..]), name);
                var aux = entry + (int)BinaryPrimitives.ReadUInt32LittleEndian(vn[8..]);
                for (var a = 0; a < cnt; a++)
                {
                    var va = image[aux..];
                    var flags = BinaryPrimitives.ReadUInt16LittleEndian(va[4..]);
                    var version = ReadString(strings, BinaryPrimitives.ReadUInt32LittleEndian(va[8..]), name);
                    needs.Add(new VersionNeed(file, version, flags, aux + 4));
                    var nextAux = (int)BinaryPrimitives.ReadUInt32LittleEndian(va[12..]);
                    if (nextAux == 0)
                    {
                        break;
                    }

                    aux += nextAux;
                }

                var next = (int)BinaryPrimitives.ReadUInt32LittleEndian(vn[12..]);
                if (next == 0)
                {
                    break;
                }

                entry += next;
            }
        }

        return needs;
    }

    /// <summary>Marks as weak every need that <paramref name="shouldWeaken"/> selects; returns the versions changed.</summary>
    /// <param name="image">The whole ELF file, edited in place.</param>
    /// <param name="name">File name used in error messages.</param>
    /// <param name="shouldWeaken">Selects needs by (file, version).</param>
    public static IReadOnlyList<string> MarkWeak(Span<byte> image, string name, Func<string, string, bool> shouldWeaken)
    {
        var changed = new List<string>();
        foreach (var need in ReadNeeds(image, name))
        {
            if (!need.IsWeak && shouldWeaken(need.File, need.Version))
            {
                BinaryPrimitives.WriteUInt16LittleEndian(image[need.FlagsOffset..], (ushort)(need.Flags | VerFlgWeak));
                changed.Add(need.Version);
            }
        }

        return changed;
    }

    /// <summary>
    /// True for libstdc++ versions newer than what Debian 12 / Ubuntu 22.04 ship (GLIBCXX 3.4.30, CXXABI 1.3.13):
    /// GCC 13 added only the <c>ios_base_library_init</c> marker under GLIBCXX_3.4.32.
    /// </summary>
    /// <param name="file">The library the version is needed from.</param>
    /// <param name="version">The version name.</param>
    public static bool IsNewerThanGcc12(string file, string version)
    {
        if (!file.StartsWith("libstdc++", StringComparison.Ordinal))
        {
            return false;
        }

        return (TryMinor(version, "GLIBCXX_3.4.", out var glibcxx) && glibcxx >= 31) ||
               (TryMinor(version, "CXXABI_1.3.", out var cxxabi) && cxxabi >= 14);
    }

    private static bool TryMinor(string version, string prefix, out int minor)
    {
        minor = 0;
        return version.StartsWith(prefix, StringComparison.Ordinal) &&
               int.TryParse(version.AsSpan(prefix.Length), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out minor);
    }

    private static string ReadString(ReadOnlySpan<byte> strings, uint offset, string name)
    {
        if (offset >= strings.Length)
        {
            throw new InvalidDataException($"'{name}': a version name points outside the string table.");
        }

        var s = strings[(int)offset..];
        var end = s.IndexOf((byte)0);
        return Encoding.ASCII.GetString(end < 0 ? s : s[..end]);
    }
}
