#include "app.h"
#include "board.h"

int main(void)
{
    board_init();
    mt_app_init();
    mt_app_run();
    return 0;
}
