using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace TransferLearning.TestSupport;

/// <summary>A temporary image folder with two easy classes: reddish and bluish noisy 40×40 images.</summary>
public sealed class GeneratedImages : IDisposable
{
    public GeneratedImages()
    {
        Root = Directory.CreateTempSubdirectory("tl-images-").FullName;
        var random = new Random(1234);
        foreach (var (name, channel) in new[] { ("blue", 2), ("red", 0) })
        {
            var dir = Directory.CreateDirectory(Path.Combine(Root, name)).FullName;
            for (var i = 0; i < 10; i++)
            {
                using var image = new Image<Rgb24>(40, 40);
                for (var y = 0; y < 40; y++)
                {
                    for (var x = 0; x < 40; x++)
                    {
                        var v = new byte[3];
                        random.NextBytes(v);
                        v[channel] = (byte)(160 + (v[channel] % 96));
                        v[(channel + 1) % 3] = (byte)(v[(channel + 1) % 3] % 80);
                        image[x, y] = new Rgb24(v[0], v[1], v[2]);
                    }
                }

                image.SaveAsPng(Path.Combine(dir, $"{name}{i:D2}.png"));
            }
        }
    }

    public string Root { get; }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
