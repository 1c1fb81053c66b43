using TransferLearning.Models;

namespace TransferLearning.Core.Tests.Models;

/// <summary>
/// The write behind <c>TrainedModel.Save</c>. When the process is asked to stop in the middle of a save (SIGTERM raises
/// <see cref="AppDomain.ProcessExit"/>), the exit handler stops the write, its temporary file is removed and the old
/// model stays; the end-to-end case sends a real SIGTERM to a process that saves in a loop.
/// </summary>
public sealed class AtomicFileTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task Write_ProcessExitDuringWrite_TemporaryFileRemovedAndOldFileKept()
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
        }));
        await writing.WaitAsync();
        var temporary = Assert.Single(Directory.GetFiles(_dir.Path, ".m.tlmodel.*.tmp"));

        // What the ProcessExit handler does, for this test's files only: stop the write at its next call and wait for it.
        var abandon = Task.Run(() => AtomicFile.Abandon(p => p.StartsWith(_dir.Path, StringComparison.Ordinal), TimeSpan.FromSeconds(30)));
        await Task.Delay(100);
        resume.Release();
        await abandon;

        Assert.False(File.Exists(temporary));
        var e = await Assert.ThrowsAsync<IOException>(() => save);
        Assert.Equal($"The process is exiting; '{path}' was not replaced.", e.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public async Task Save_SigTermDuringSaves_NoTemporaryFileLeft()
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var start = new System.Diagnostics.ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
            start.ArgumentList.Add(typeof(AtomicFileTests).Assembly.Location);
            start.ArgumentList.Add("save-loop");
            start.ArgumentList.Add(_dir.Path);
            using var child = System.Diagnostics.Process.Start(start)!;
            var error = child.StandardError.ReadToEndAsync();
            string? line;
            while ((line = await child.StandardOutput.ReadLineAsync()) is not null && line != $"saving {attempt + 2}")
            {
            }

            Assert.NotNull(line); // the child is saving
            await Task.Delay(10 * attempt);
            Assert.Equal(0, Kill(child.Id, 15));
            await child.WaitForExitAsync();

            Assert.Equal(143, child.ExitCode); // .NET's default SIGTERM handling: graceful exit, 128 + 15
            Assert.Equal(string.Empty, await error);
            Assert.Equal(["m.tlmodel"], Directory.GetFiles(_dir.Path).Select(Path.GetFileName));
        }
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
