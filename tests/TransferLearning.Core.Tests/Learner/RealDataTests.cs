using TransferLearning.Datasets;
using TransferLearning.Training;

namespace TransferLearning.Core.Tests.Learner;

[Trait("Category", "RealData")]
public class RealDataTests
{
    [Fact]
    public void Fit_Resnet18OnShippedFlowerPhotos_AccuracyWellAboveChance()
    {
        Assert.True(Directory.Exists(RepoPaths.SamplePhotos), $"The sample's flower photos are committed at {RepoPaths.SamplePhotos}; restore them with git checkout.");
        var folder = ImageFolder.Load(RepoPaths.SamplePhotos);
        var slice = new ImageDataset(folder.Classes, folder.Samples.GroupBy(s => s.Label).SelectMany(g => g.Take(20)).ToList());
        var data = slice.Split(0.7, seed: 42);

        var (model, history) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).Fit(data, epochs: 6);
        using (model)
        {
            // 5 classes: chance is 0.2.
            Assert.True(history[History.ValAccuracy][^1] >= 0.6, history.ToString());
            var prediction = model.Predict(data.Validation.Samples[0].Path);
            Assert.Contains(prediction.Label, folder.Classes);
        }
    }
}
