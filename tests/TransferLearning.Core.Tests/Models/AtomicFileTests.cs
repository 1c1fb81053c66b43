using TransferLearning.Models;

namespace TransferLearning.Core.Tests.Models;

/// <summary>
/// The write behind <c>TrainedModel.Save</c> and <c>ExportOnnx</c>: a process killed inside a write (SIGTERM, SIGKILL)
/// leaves no partial file where unnamed temporary files exist, and a named leftover is removed by the next write where
/// they do not; when the process exits through <see cref="AppDomain.ProcessExit"/> (Environment.Exit) the exit handler
/// stops the write and the old file stays; a writer that throws leaves the old file.
/// </summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Write_ProcessExitDuringWrite_TemporaryFileRemovedAndOldFileKept(bool allowUnnamed)
    {
        var path = _dir.Combine("m.tlmodel");
        File.WriteAllText(path, "old");
        using var writing = new SemaphoreSlim(0);
        using var resume = new SemaphoreSlim(0);

        var save = Task.Run(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[100_000]);
            writing.Release();
            resume.Wait();
            stream.Write(new byte[100_000]);
        }, allowUnnamed));
        await writing.WaitAsync();
        var temporaries = Directory.GetFiles(_dir.Path, ".m.tlmodel.*.tmp");
        Assert.Equal(allowUnnamed ? 0 : 1, temporaries.Length); // an unnamed file has no name until it is complete

        // What the ProcessExit handler does, for this test's files only: stop the write and wait for it. The write resumes
        // when Abandon picks it, while Abandon holds the lock the write needs to finish, so it is stopped first whatever the
        // thread pool's timing (a fixed delay here once let the write finish first on a loaded machine).
        await Task.Run(() => AtomicFile.Abandon(
            p =>
            {
                var ours = p.StartsWith(_dir.Path, StringComparison.Ordinal);
                if (ours)
                {
                    resume.Release();
                }

                return ours;
            },
            TimeSpan.FromSeconds(30)));

        Assert.All(temporaries, t => Assert.False(File.Exists(t)));
        var e = await Assert.ThrowsAsync<IOException>(() => save);
        Assert.Equal($"The process is exiting; '{path}' was not replaced.", e.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(_dir.Path));
    }

    [Theory]
    [InlineData(15)] // SIGTERM: since .NET 10 an application without its own handler ends at once, no ProcessExit
    [InlineData(9)] // SIGKILL
    public async Task Write_ProcessKilledDuringWrite_NoPartialFileAndOldFileKept(int signal)
    {
        // The library runs on Linux (LibTorch linux-x64); ext4, xfs, btrfs and tmpfs have unnamed files (O_TMPFILE).
        Assert.True(AtomicFile.UsesUnnamedFiles(_dir.Path), $"the file system of '{_dir.Path}' has no unnamed files (O_TMPFILE); saves there use the named fallback tested below");
        var path = _dir.Combine("m.tlmodel");
        File.WriteAllText(path, "old");

        var exitCode = await KillDuringWrite(path, named: false, signal);

        Assert.Equal(128 + signal, exitCode); // killed by the signal
        Assert.Equal(["m.tlmodel"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
        Assert.Equal("old", File.ReadAllText(path));
    }

    [Fact]
    public async Task Write_NamedTemporaryOfKilledWriter_RemovedByNextWrite()
    {
        var path = _dir.Combine("m.tlmodel");
        File.WriteAllText(path, "old");

        Assert.Equal(128 + 9, await KillDuringWrite(path, named: true, signal: 9));
        var leftover = Assert.Single(Directory.GetFiles(_dir.Path, ".m.tlmodel.*.tmp"));
        Assert.Equal(1 << 20, new FileInfo(leftover).Length); // the partial file the named fallback leaves
        Assert.Equal("old", File.ReadAllText(path));

        AtomicFile.Write(path, stream => stream.Write("new"u8), allowUnnamed: false);

        Assert.Equal(["m.tlmodel"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
        Assert.Equal("new", File.ReadAllText(path));
    }

    /// <summary>Starts a child that writes <paramref name="path"/> and waits inside the write, kills it there, and returns its exit code.</summary>
    private static async Task<int> KillDuringWrite(string path, bool named, int signal)
    {
        var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(typeof(AtomicFileTests).Assembly.Location);
        start.ArgumentList.Add("write-and-wait");
        start.ArgumentList.Add(path);
        if (named)
        {
            start.ArgumentList.Add("named");
        }

        using var child = System.Diagnostics.Process.Start(start)!;
        var error = child.StandardError.ReadToEndAsync();
        Assert.Equal("writing", await child.StandardOutput.ReadLineAsync()); // the child is inside the write
        Assert.Equal(0, Kill(child.Id, signal));
        await child.WaitForExitAsync();
        Assert.Equal(string.Empty, await error);
        return child.ExitCode;
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    [System.Runtime.InteropServices.DefaultDllImportSearchPaths(System.Runtime.InteropServices.DllImportSearchPath.SafeDirectories)]
    private static extern int Kill(int pid, int signal);

    [Fact]
    public void Write_WriterThrows_TemporaryFileRemovedAndOldFileKept()
    {
        var path = _dir.Combine("m.tlmodel");
        File.WriteAllText(path, "old");

        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write(new byte[1000]);
            throw new InvalidOperationException("serialisation failed");
        }));

        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(_dir.Path));
    }
}
