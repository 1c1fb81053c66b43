// Flowers: train, evaluate and use an image classifier with TransferLearning, from the command line.
//   Flowers                                     train on the small flowers set shipped with the sample (offline)
//   Flowers train --data DIR [options]          train on your own folder of class folders
//   Flowers evaluate --model FILE --data DIR    measure a saved model on labelled images
//   Flowers predict --model FILE IMAGE...       classify images
return await Flowers.App.MainAsync(args);
