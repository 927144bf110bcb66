"""Using a trained model: ``predict`` (one pose file), ``translate`` (videos: pose extraction then
predict), ``pose_extraction`` (videos to pose files, rtmlib), ``plotting`` (the fusion gate drawn)."""
