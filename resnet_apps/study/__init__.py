"""Studies that test a claim of the ResNet paper on the user's own data.

``degradation``: plain vs residual CIFAR-style nets by depth (He et al. 2016, Fig. 6 and Table 6);
``runner.run_study`` trains them, ``summary`` puts the seeds together, ``report`` draws the page.
Nothing is imported here, so ``import resnet_apps.study`` stays light.
"""
