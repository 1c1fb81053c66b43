namespace TransferLearning.Backbones;

/// <summary>A backbone network that can describe how to rebuild itself (a capability; saved models record it).</summary>
internal interface IRebuildableModule
{
    /// <summary>What a saved model records so that its format can rebuild this network with placeholder weights.</summary>
    /// <param name="backbone">The backbone running this module (feature size, input size rules).</param>
    /// <returns>The description, or null when this instance was built without what it needs (e.g. by hand in a test).</returns>
    BackboneArchitecture? Describe(Backbone backbone);
}
