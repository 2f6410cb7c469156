"""The default configuration tree: every option MultiTrain knows, one comment each.

Sections follow the package folders. Option names come from the original MultiTrain /
PySlowFast YAMLs so their configs and command lines keep working. A few keys are accepted
for compatibility only (they had no effect on the published runs); their comment says so.
"""
from yacs.config import CfgNode as CN

_C = CN()

# ----------------------------------------------------------------------------------------
# Top level: run, hardware, logging
# ----------------------------------------------------------------------------------------
_C.NUM_GPUS = 1  # GPUs per node (processes per shard); 0 runs one CPU process per shard.
_C.NUM_SHARDS = 1  # Number of nodes (shards) of the job.
_C.SHARD_ID = 0  # This node's index in [0, NUM_SHARDS).
_C.DIST_BACKEND = "nccl"  # Backend on GPUs; CPU runs (NUM_GPUS 0) always use gloo.
_C.OUTPUT_DIR = "./outputs"  # Where config.yaml, logs, checkpoints and results are written.
_C.RNG_SEED = 0  # Seed of python, numpy and torch RNGs (offset per rank).
_C.LOG_PERIOD = 10  # Iterations between JSON stat lines in the log.
_C.LOG_MODEL_INFO = True  # Log parameter count and GFLOPs of one view at start.
_C.USE_TQDM = False  # tqdm bars (rank 0) for training, validation and testing.
# cuDNN picks its convolution algorithms by timing them (torch.backends.cudnn.benchmark).
# MViT's pooling convolutions are depthwise Conv3d, whose default weight-gradient kernel is
# slow; MViTv2-B trains much faster on a GPU with this on (docs/BENCHMARKS.md, "GPU").
# Clip shapes are fixed, so each shape is timed once. False: the same algorithms every run.
_C.CUDNN_BENCHMARK = True

# ----------------------------------------------------------------------------------------
# Distributed runtime
# ----------------------------------------------------------------------------------------
_C.DIST = CN()
_C.DIST.TIMEOUT_SECONDS = 1800  # Collective timeout: a dead rank makes the others fail after this.

# ----------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------
_C.TRAIN = CN()
_C.TRAIN.ENABLE = True  # Run training.
_C.TRAIN.DATASET = "kinetics"  # Training set name, or "multi_dataset_seq" for MODEL.MULTI_DATASETS.
_C.TRAIN.BATCH_SIZE = 64  # Videos per micro-step across all GPUs of all shards (global).
_C.TRAIN.GRAD_ACCU_NUM_BATCH = 1  # Micro-batches accumulated per optimizer step.
_C.TRAIN.MIXED_PRECISION = False  # Autocast forward/backward (fp16 with grad scaler by default).
_C.TRAIN.MIXED_PRECISION_DTYPE = "float16"  # Autocast dtype: "float16" (grad scaler) or "bfloat16".
_C.TRAIN.GATHER_BEFORE_LOSS = False  # All-gather logits/features/labels so losses see the global batch.
_C.TRAIN.EVAL_PERIOD = 10  # Epochs between validations (also after the last epoch).
_C.TRAIN.CHECKPOINT_PERIOD = 10  # Epochs between checkpoints (also after the last epoch).
_C.TRAIN.CHECKPOINT_ITER_PERIOD = 0  # Iterations between mid-epoch checkpoints; 0 disables.
_C.TRAIN.CHECKPOINT_KEEP = 0  # Keep only the newest N checkpoints; 0 keeps all.
_C.TRAIN.AUTO_RESUME = False  # Resume from the newest complete checkpoint in OUTPUT_DIR.
_C.TRAIN.LOG_SAMPLES = False  # Append each step's items per rank to OUTPUT_DIR/samples_rank<R>.jsonl.
_C.TRAIN.CHECKPOINT_FILE_PATH = ""  # Checkpoint to initialise from (original or ours).
_C.TRAIN.CHECKPOINT_EPOCH_RESET = False  # With CHECKPOINT_FILE_PATH: start at epoch 0, no optimizer state.
_C.TRAIN.CHECKPOINT_TYPE = "pytorch"  # Checkpoint format; only "pytorch" (accepted for compatibility).
_C.TRAIN.CHECKPOINT_INFLATE = False  # Compatibility only: 2D->3D inflation is not supported.
_C.TRAIN.MAX_ITERS_PER_EPOCH = 0  # Cap on iterations per epoch (demos and tests); 0 = no cap.

# ----------------------------------------------------------------------------------------
# Testing (multi-view)
# ----------------------------------------------------------------------------------------
_C.TEST = CN()
_C.TEST.ENABLE = True  # Run multi-view testing after training (or alone).
_C.TEST.DATASET = "kinetics"  # Dataset tested; its head is used in a multi-head model.
_C.TEST.BATCH_SIZE = 8  # Views per step across all GPUs of all shards (global).
_C.TEST.CHECKPOINT_FILE_PATH = ""  # Checkpoint tested; empty: newest own, then TRAIN's file.
_C.TEST.CHECKPOINT_TYPE = "pytorch"  # Compatibility only.
_C.TEST.NUM_ENSEMBLE_VIEWS = 10  # Temporal views per video.
_C.TEST.NUM_SPATIAL_CROPS = 3  # Spatial crops per temporal view (1 or 3).
_C.TEST.DECODE_ONCE = True  # Decode a test video once for all its views (False: once per view).
_C.TEST.ENABLE_SAVE = False  # np.save the [videos, classes] ensembled scores (rank 0).
_C.TEST.SAVE_RESULTS_PATH = ""  # Path of the .npy (as given); "" = OUTPUT_DIR/test_scores_<dataset>.npy.

# ----------------------------------------------------------------------------------------
# Model (heads, losses, multi-dataset options)
# ----------------------------------------------------------------------------------------
_C.MODEL = CN()
_C.MODEL.ARCH = "mvit"  # Backbone family; only "mvit".
_C.MODEL.MODEL_NAME = "MViT"  # Model class in the registry.
_C.MODEL.NUM_CLASSES = 400  # Classes of the single-head model (ignored by multi-head models).
_C.MODEL.LOSS_FUNC = "soft_cross_entropy"  # Loss of the single-head model.
_C.MODEL.DROPOUT_RATE = 0.5  # Dropout before (Linear) or inside (MLP) the classification heads.
_C.MODEL.HEAD_ACT = "softmax"  # Eval activation of the single head.
_C.MODEL.ACT_CHECKPOINT = False  # Activation checkpointing per block (less memory, slower).
_C.MODEL.POOL_CHANNELS_LAST = True  # CUDA: channels-last strides for the pooling Conv3d weights.
_C.MODEL.COMPILE = False  # torch.compile the model in place (slow first steps; CPU and CUDA).
_C.MODEL.COMPILE_BACKEND = "inductor"  # torch.compile backend ("aot_eager": trace only, no codegen).
_C.MODEL.USE_MULTI_HEAD = False  # One head per dataset of MULTI_DATASETS.
_C.MODEL.MULTI_DATASETS = []  # Dataset names, one head each (e.g. kinetics, mit, ssv2).
_C.MODEL.MULTI_REPLICAS = []  # Times each dataset is repeated in a training epoch.
_C.MODEL.MULTI_LOSS_FUNCS = []  # Loss per head: soft_cross_entropy or bce (multi-label sets).
_C.MODEL.MULTI_NUM_CLASSES = []  # Classes per head.
_C.MODEL.MULTI_HEAD_ACT = []  # Eval activation per head: softmax or sigmoid.
_C.MODEL.MULTI_LOSS_WEIGHTS = []  # Fixed loss weight per head.
_C.MODEL.MULTI_PATH_TO_DATA_DIR = []  # Annotation folder per dataset (train/val).
_C.MODEL.MULTI_PATH_PREFIX = []  # Video folder per dataset (train/val).
_C.MODEL.MULTI_USE_MLP = False  # Heads are MLPs (dim -> 2048 -> classes) instead of Linear.
_C.MODEL.MULTI_ADD_CROSS_PROJ = False  # Cross-dataset projection layers and their loss.
_C.MODEL.MULTI_CROSS_PROJ_ADD_TO_PRED = False  # Compatibility only: must stay False.
_C.MODEL.MULTI_PROJ_LOSS_WEIGHT = 1.0  # Weight of the projection loss inside each head's loss.
_C.MODEL.MULTI_PROJ_LOSS_FUNC = "soft_cross_entropy"  # Loss of the projected logits.
_C.MODEL.MULTI_PROJ_SPARSITY_LOSS_TYPE = ""  # "" or "l1": sparsity on projection weights.
_C.MODEL.MULTI_PROJ_SPARSITY_LOSS_WEIGHT = 0.0001  # Weight of the projection sparsity term.
_C.MODEL.LOAD_MULTI_PROJ_INIT_FILE = ""  # Compatibility only: must stay empty.
_C.MODEL.MULTI_USE_MTL_WEIGHT = False  # Learned uncertainty weights L/(2s) + log(s)/2 per head.
_C.MODEL.USE_INF_LOSS = False  # Informative loss on the (expanded) pooled feature.
_C.MODEL.USE_INF_EXPANDER = False  # MLP expander dim -> 4096 -> dim before the informative loss.
_C.MODEL.USE_INF_LEARN_WEIGHT = False  # Learned uncertainty weight for the informative loss.
_C.MODEL.INF_LOSS_WEIGHT = 0.1  # Weight of the informative loss.
_C.MODEL.INF_STD_WEIGHT = 25.0  # Weight of the variance (std) term of the informative loss.
_C.MODEL.INF_COVAR_WEIGHT = 1.0  # Weight of the covariance term of the informative loss.

# ----------------------------------------------------------------------------------------
# MViT backbone
# ----------------------------------------------------------------------------------------
_C.MVIT = CN()
_C.MVIT.MODE = "conv"  # Pooling operator; only "conv" (depthwise Conv3d).
_C.MVIT.POOL_FIRST = False  # Compatibility only: pooling after the qkv projection.
_C.MVIT.CLS_EMBED_ON = True  # Prepend a class token (official variant).
_C.MVIT.PATCH_KERNEL = [3, 7, 7]  # Patch-embedding Conv3d kernel (t, h, w).
_C.MVIT.PATCH_STRIDE = [2, 4, 4]  # Patch-embedding stride.
_C.MVIT.PATCH_PADDING = [2, 4, 4]  # Patch-embedding padding.
_C.MVIT.PATCH_2D = False  # Compatibility only: 2D patches are not supported.
_C.MVIT.EMBED_DIM = 96  # Width of the first stage.
_C.MVIT.NUM_HEADS = 1  # Attention heads of the first stage.
_C.MVIT.MLP_RATIO = 4.0  # MLP hidden width / block width.
_C.MVIT.QKV_BIAS = True  # Bias in the qkv projection.
_C.MVIT.DROPPATH_RATE = 0.1  # Stochastic depth rate of the last block (linear in depth).
_C.MVIT.DEPTH = 16  # Number of blocks.
_C.MVIT.NORM = "layernorm"  # Normalisation; only layernorm.
_C.MVIT.DIM_MUL = []  # [[block, factor]]: width multiplier at these blocks.
_C.MVIT.HEAD_MUL = []  # [[block, factor]]: head-count multiplier at these blocks.
_C.MVIT.POOL_KV_STRIDE = []  # [[block, st, sh, sw]]: explicit K/V pooling strides.
_C.MVIT.POOL_KV_STRIDE_ADAPTIVE = []  # K/V stride of block 0, divided by each Q stride met.
_C.MVIT.POOL_Q_STRIDE = []  # [[block, st, sh, sw]]: Q pooling strides (spatial downsampling).
_C.MVIT.POOL_KVQ_KERNEL = None  # Pooling kernel of Q/K/V (t, h, w).
_C.MVIT.ZERO_DECAY_POS_CLS = True  # No weight decay on position tables and class token.
_C.MVIT.NORM_STEM = False  # Compatibility only: LayerNorm after the patch embedding.
_C.MVIT.SEP_POS_EMBED = False  # Separate spatial and temporal absolute position tables.
_C.MVIT.DROPOUT_RATE = 0.0  # Dropout after attention projection and MLP.
_C.MVIT.USE_ABS_POS = True  # Absolute position tables (official variant: False with rel-pos).
_C.MVIT.REL_POS_SPATIAL = False  # Decomposed relative positions over height and width.
_C.MVIT.REL_POS_TEMPORAL = False  # Decomposed relative positions over time.
_C.MVIT.REL_POS_ZERO_INIT = False  # Zero-initialise the relative-position tables.
_C.MVIT.RESIDUAL_POOLING = False  # Add the pooled query to the attention output (official).
_C.MVIT.DIM_MUL_IN_ATT = False  # Official variant: width changes inside attention.
_C.MVIT.SEPARATE_QKV = False  # Compatibility only: separate q/k/v Linear layers are not supported.
_C.MVIT.CHANNEL_EXPAND_FRONT = False  # MultiTrain: width changes inside attention, linear skip.
_C.MVIT.Q_POOL_ALL = False  # MultiTrain: pool Q (stride 1) in blocks without a listed stride.
_C.MVIT.Q_POOL_RESIDUAL = False  # MultiTrain: add the pooled query to each head's output.
_C.MVIT.ATTENTION_IMPL = "sdpa"  # "sdpa" (fused kernels) or "reference" (softmax(QK^T)V; tests).

# ----------------------------------------------------------------------------------------
# Data: annotations, decoding, temporal sampling, test views
# ----------------------------------------------------------------------------------------
_C.DATA = CN()
_C.DATA.PATH_TO_DATA_DIR = ""  # Folder holding train.csv / val.csv / test.csv.
_C.DATA.PATH_PREFIX = ""  # Folder the CSV's relative video paths start from.
_C.DATA.PATH_LABEL_SEPARATOR = " "  # Separator between path and label in the CSVs.
_C.DATA.NUM_CLASSES = 400  # Classes of DATA.PATH_TO_DATA_DIR's labels (single-dataset/test).
_C.DATA.MULTI_LABEL = False  # Labels may be comma-separated lists (multi-label sets).
_C.DATA.ENSEMBLE_METHOD = "sum"  # How test views are combined: sum or max.
_C.DATA.NUM_FRAMES = 8  # Frames per clip (model input T).
_C.DATA.SAMPLING_RATE = 8  # Stride between sampled frames at TARGET_FPS.
_C.DATA.TARGET_FPS = 30  # Clip span is measured at this frame rate, then rescaled to the video's.
_C.DATA.TRAIN_JITTER_SCALES = [256, 320]  # Short-side range of the scale jitter.
_C.DATA.TRAIN_CROP_SIZE = 224  # Train crop size (also sizes the position tables).
_C.DATA.TEST_CROP_SIZE = 256  # Test crop size.
_C.DATA.TRAIN_JITTER_SCALES_RELATIVE = []  # Random-resized-crop area range; [] = short-side jitter.
_C.DATA.TRAIN_JITTER_ASPECT_RELATIVE = []  # Random-resized-crop aspect range.
_C.DATA.INPUT_CHANNEL_NUM = [3]  # Input channels per pathway.
_C.DATA.MEAN = [0.45, 0.45, 0.45]  # Per-channel mean (pixel values in [0, 1]).
_C.DATA.STD = [0.225, 0.225, 0.225]  # Per-channel standard deviation.
_C.DATA.DECODING_BACKEND = "decord"  # decord (default) or pyav ("torchvision" is read as pyav).
_C.DATA.USE_OFFSET_SAMPLING = False  # Test views: first starts at 0, last ends at the end.
_C.DATA.INV_UNIFORM_SAMPLE = False  # Compatibility: SSv2 reading (segment sampling is by dataset).
_C.DATA.RANDOM_FLIP = True  # Horizontal flip in training (never for SSv2-style datasets).
_C.DATA.TEMPORAL_SAMPLING = ""  # "clip" or "segment"; "" = from the dataset name (ssv2: segment).
_C.DATA.VAL_SKIP = 1  # Validation keeps every VAL_SKIP-th line of val.csv.
_C.DATA.MODEL_DIFF_DATA = False  # Test through TRAIN.DATASET's head; save scores, no accuracy.
_C.DATA.DECODE_RETRIES = 3  # Tries before a bad video is replaced (train/val).
_C.DATA.CLASS_NAMES_FILE = ""  # Class names: JSON list (TEST.DATASET) or {dataset: [names]}.

# ----------------------------------------------------------------------------------------
# Augmentation
# ----------------------------------------------------------------------------------------
_C.AUG = CN()
_C.AUG.ENABLE = False  # RandAugment + random erasing recipe in training.
_C.AUG.NUM_SAMPLE = 1  # Independently augmented clips per decoded video.
_C.AUG.COLOR_JITTER = 0.4  # Compatibility only: unused when AA_TYPE is set (as in the original).
_C.AUG.AA_TYPE = "rand-m9-mstd0.5-inc1"  # RandAugment policy string.
_C.AUG.INTERPOLATION = "bicubic"  # Interpolation of RandAugment's geometric ops.
_C.AUG.RE_PROB = 0.25  # Random erasing probability.
_C.AUG.RE_MODE = "pixel"  # Random erasing fill: pixel (per-pixel noise), rand or const.
_C.AUG.RE_COUNT = 1  # Random erasing boxes.
_C.AUG.RE_SPLIT = False  # Compatibility only: must stay False.
_C.AUG.ON_DEVICE = False  # Workers only decode; the recipe runs batched on the training device.
_C.AUG.CROP_FIRST = False  # Crop before RandAugment: faster, NOT the paper's recipe.

_C.MIXUP = CN()
_C.MIXUP.ENABLE = False  # Mixup / CutMix on the local batch.
_C.MIXUP.ALPHA = 0.8  # Mixup Beta parameter.
_C.MIXUP.CUTMIX_ALPHA = 1.0  # CutMix Beta parameter.
_C.MIXUP.PROB = 1.0  # Probability of mixing a batch.
_C.MIXUP.SWITCH_PROB = 0.5  # Probability of CutMix instead of Mixup.
_C.MIXUP.LABEL_SMOOTH_VALUE = 0.1  # Label smoothing (per head, with its own class count).

# ----------------------------------------------------------------------------------------
# Optimisation
# ----------------------------------------------------------------------------------------
_C.SOLVER = CN()
_C.SOLVER.OPTIMIZING_METHOD = "adamw"  # adamw or sgd.
_C.SOLVER.FUSED_ADAMW = True  # CUDA parameters: AdamW's fused kernel (CPU: the default one).
_C.SOLVER.BASE_LR = 0.1  # Peak learning rate.
_C.SOLVER.BASE_LR_SCALE_NUM_SHARDS = False  # Multiply BASE_LR, WARMUP_START_LR, COSINE_END_LR by NUM_SHARDS.
_C.SOLVER.LR_POLICY = "cosine"  # Only cosine.
_C.SOLVER.COSINE_END_LR = 0.0  # Final learning rate of the cosine.
_C.SOLVER.COSINE_AFTER_WARMUP = False  # Cosine from WARMUP_EPOCHS (not from 0) to MAX_EPOCH.
_C.SOLVER.WARMUP_EPOCHS = 0.0  # Linear warm-up length in epochs.
_C.SOLVER.WARMUP_START_LR = 0.01  # Learning rate at the start of warm-up.
_C.SOLVER.MAX_EPOCH = 300  # Training epochs.
_C.SOLVER.MOMENTUM = 0.9  # SGD momentum (AdamW beta1 stays 0.9).
_C.SOLVER.DAMPENING = 0.0  # SGD dampening.
_C.SOLVER.NESTEROV = True  # SGD Nesterov.
_C.SOLVER.WEIGHT_DECAY = 1e-4  # Weight decay.
_C.SOLVER.ZERO_WD_1D_PARAM = False  # No weight decay on 1-D parameters (norms, biases).
_C.SOLVER.CLIP_GRAD_L2NORM = None  # Clip the gradient's global L2 norm (None = no clipping).
_C.SOLVER.CLIP_GRAD_VAL = None  # Clip gradient values (None = no clipping); wins over L2NORM.
# Which gradient the CLIP_GRAD_* thresholds (and the weights of the sparsity and learned-weight
# terms) refer to under TRAIN.GATHER_BEFORE_LOSS: "original" (the original code's, 1/W of the
# global batch's on W processes: reproduces the published runs) or "global_batch" (as typed).
_C.SOLVER.GRAD_REFERENCE = "original"

# ----------------------------------------------------------------------------------------
# Loader, logging, compatibility sections
# ----------------------------------------------------------------------------------------
_C.DATA_LOADER = CN()
_C.DATA_LOADER.NUM_WORKERS = 8  # Loader worker processes per training process.
_C.DATA_LOADER.PIN_MEMORY = True  # Pinned host memory for faster copies to the GPU.
_C.DATA_LOADER.ENABLE_MULTI_THREAD_DECODE = False  # Compatibility only.

_C.TENSORBOARD = CN()
_C.TENSORBOARD.ENABLE = False  # Write tensorboard scalars.
_C.TENSORBOARD.LOG_DIR = ""  # Folder under OUTPUT_DIR ("" = runs-<dataset>).

_C.BN = CN()
_C.BN.USE_PRECISE_STATS = False  # Compatibility only: MViT has no BatchNorm.
_C.BN.NUM_BATCHES_PRECISE = 200  # Compatibility only.


def get_cfg() -> CN:
    """Return a fresh, mutable copy of the defaults."""
    return _C.clone()
