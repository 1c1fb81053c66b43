// <readme:quickstart>
using TransferLearning;
using TransferLearning.Datasets;

var data = ImageFolder.Load("flower_photos").Split(0.7, seed: 42);   // one sub-folder per class
var (model, history) = TransferLearner.From("resnet18").Freeze().AddHead(data.Classes).Fit(data, epochs: 6);
Console.WriteLine(history);                                          // loss, accuracy, val_loss, val_accuracy per epoch

var prediction = model.Predict("flower_photos/roses/my_rose.jpg");
Console.WriteLine($"{prediction.Label} ({prediction.Probability:P1})");
model.Save("flowers.tlmodel");
// </readme:quickstart>
model.Dispose();
