"""The training loop, split by concern (`fastconv.train` re-exports the public names).

    hyperparameters  `Hyperparameters`, the reports' defaults, accepted ranges, `epoch_seed`
    model_setup      model options and config, `check_model_fits`, `as_model_input`
    evaluation       `evaluate` (sharded over ranks when there are several)
    state            `Run`, `Progress`, `TrainResult`
    world            `LocalWorld`: the hooks where multi-process training attaches
    interrupt        Ctrl-C handling
    trainer          `Trainer`: batches, step, evaluate, checkpoint
    runs             `train`: a new or resumed run, under the output folder's lock
"""
