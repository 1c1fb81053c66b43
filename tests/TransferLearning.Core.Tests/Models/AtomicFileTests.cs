using TransferLearning.Models;

namespace TransferLearning.Core.Tests.Models;

/// <summary>
/// The write behind <c>TrainedModel.Save</c>. When the process is asked to stop in the middle of a save (SIGTERM raises
/// <see cref="AppDomain.ProcessExit"/>), the exit handler removes the temporary file and the old model stays.
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

        AtomicFile.AbandonPending(p => p.StartsWith(_dir.Path, StringComparison.Ordinal)); // what the ProcessExit handler does (for this test's files only)
        Assert.False(File.Exists(temporary));
        resume.Release();

        var e = await Assert.ThrowsAsync<IOException>(() => save);
        Assert.Equal($"The process is exiting; '{path}' was not replaced.", e.Message);
        Assert.Equal("old", File.ReadAllText(path));
        Assert.Equal([path], Directory.GetFiles(_dir.Path));
    }

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
